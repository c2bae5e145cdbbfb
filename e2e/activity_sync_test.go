package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestActivitySyncAlways: with --activity-sync always (fsync before each statement is forwarded,
// the strict opt-in) every statement of a session is in the trail exactly once with its outcome,
// and the chain verifies, as with the default interval policy that the other activity tests use.
func TestActivitySyncAlways(t *testing.T) {
	t.Parallel()
	f := newPGFixture(t)
	tok := f.token(t)
	ctx := context.Background()
	f.startSidecar(t, f.priv, "--activity-sync", "always", "--activity-sync-interval", "10ms")
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", f.port) })
	conn, err := f.connect(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := conn.Exec(ctx, fmt.Sprintf("select %d as sync_always", i)); err != nil {
			t.Fatalf("statement %d: %v", i, err)
		}
	}
	conn.Close(ctx)
	waitUntil(t, 20*time.Second, "20 statements with their outcomes in the trail", func() bool {
		recs := statementsLike(activity(t, f.admin, "--query", "sync_always"), "select ")
		if len(recs) != 20 {
			return false
		}
		for _, r := range recs {
			if r.Rows != 1 {
				return false // its statement.end has not arrived yet
			}
		}
		return true
	})
	res := f.admin.Run("activity", "verify")
	if res.Code != 0 || !strings.Contains(res.Stdout, "OK") {
		t.Errorf("activity verify: %s", res)
	}
}
