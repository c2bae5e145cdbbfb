package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestActivityRecordParameters: bind parameter values reach the trail only once the repository
// opts in with --record-parameters.
func TestActivityRecordParameters(t *testing.T) {
	t.Parallel()
	f, tok := startGoverned(t)
	ctx := context.Background()
	run := func(value string) {
		t.Helper()
		conn, err := f.connect(ctx, tok.Token)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var got string
		// Extended protocol: the string is sent as a text parameter, the int8 in binary.
		if err := conn.QueryRow(ctx, "select $1::text || $2::int8 as param_probe", value, int64(7)).Scan(&got); err != nil || got != value+"7" {
			t.Fatalf("param_probe: %q, %v", got, err)
		}
	}
	probes := func() []activityLine {
		return statementsLike(activity(t, f.admin), "select $1::text || $2::int8 as param_probe")
	}

	off := "param-off-" + rand.Text()
	run(off)
	waitUntil(t, 10*time.Second, "probe recorded", func() bool { return len(probes()) == 1 })
	for _, format := range []string{"json", "jsonl"} {
		out := f.admin.MustRun("activity", "list", "--since", "1h", "--output", format)
		if strings.Contains(out, off) || strings.Contains(out, `"params"`) {
			t.Errorf("a bind value reached `activity list --output %s` with record_parameters off:\n%s", format, out)
		}
	}

	f.admin.MustRun("repository", "update", "app", "--record-parameters")
	var repo struct {
		RecordParameters bool `json:"record_parameters"`
	}
	f.admin.MustRunJSON(&repo, "repository", "get", "app")
	if !repo.RecordParameters {
		t.Fatal("repository get: record_parameters is not on after update --record-parameters")
	}
	// The sidecar applies it to sessions that start after it synced the change.
	var on string
	var rec activityLine
	waitUntil(t, 15*time.Second, "parameters recorded", func() bool {
		on = "param-on-" + rand.Text()
		run(on)
		time.Sleep(200 * time.Millisecond)
		for _, r := range probes() {
			if len(r.Params) > 0 && r.Params[0] == on {
				rec = r
				return true
			}
		}
		return false
	})
	if want := []string{on, `\x0000000000000007`}; fmt.Sprint(rec.Params) != fmt.Sprint(want) {
		t.Errorf("params %q, want %q (text as text, binary int8 as hex)", rec.Params, want)
	}
	if out := f.admin.MustRun("activity", "list", "--since", "1h", "--output", "jsonl"); !strings.Contains(out, on) {
		t.Errorf("the recorded value is not in the JSON Lines export")
	}

	// Turning it off again stops recording for sessions that start after the sidecar synced it.
	f.admin.MustRun("repository", "update", "app", "--record-parameters=false")
	waitUntil(t, 15*time.Second, "parameters no longer recorded", func() bool {
		before := len(probes())
		run("param-off-again-" + rand.Text())
		var ps []activityLine
		waitUntil(t, 10*time.Second, "probe recorded", func() bool { ps = probes(); return len(ps) > before })
		return len(ps[len(ps)-1].Params) == 0
	})
}

// TestActivitySessions: refused logins are recorded with their outcome and reason; a session's
// end carries its duration and the bytes each way.
func TestActivitySessions(t *testing.T) {
	t.Parallel()
	f, tok := startGoverned(t)
	ctx := context.Background()

	if _, err := f.connect(ctx, "not-a-gatehouse-token"); err == nil {
		t.Fatal("login with a bad token succeeded")
	}
	// A valid token, but no impersonation rule lets alice act as "reporter".
	f.admin.MustRun("repository", "user", "create", "--repository", "app", "--username", "reporter", "--secret-source", "env", "--env-name", "APP_DB_PASSWORD")
	waitUntil(t, 10*time.Second, "login as reporter refused for lack of a rule", func() bool {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://reporter:%s@127.0.0.1:%d/postgres?sslmode=require&connect_timeout=5", tok.Token, f.port))
		if err == nil {
			c.Close(ctx)
			t.Fatal("reporter login succeeded without an impersonation rule")
		}
		return strings.Contains(err.Error(), "reporter")
	})

	conn, err := f.connect(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "select repeat('x', 100000) as session_bytes"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	conn.Close(ctx)

	var recs []activityLine
	var badToken, noRule, start, end *activityLine
	waitUntil(t, 15*time.Second, "refusals and the session end recorded", func() bool {
		recs = activity(t, f.admin)
		badToken, noRule, start, end = nil, nil, nil, nil
		var session string
		for i := range recs {
			r := &recs[i]
			if r.Type == "statement" && strings.Contains(r.Statement, "session_bytes") {
				session = r.SessionID
			}
		}
		for i := range recs {
			r := &recs[i]
			switch {
			case r.Type == "session.start" && r.Outcome == "refused" && strings.Contains(r.Reason, "not recognised"):
				badToken = r
			case r.Type == "session.start" && r.Outcome == "refused" && r.RepositoryUser == "reporter":
				noRule = r
			case r.Type == "session.start" && session != "" && r.SessionID == session:
				start = r
			case r.Type == "session.end" && session != "" && r.SessionID == session:
				end = r
			}
		}
		return badToken != nil && noRule != nil && start != nil && end != nil
	})
	if badToken.User != "" {
		t.Errorf("bad-token refusal names user %q; the token identifies no one", badToken.User)
	}
	if noRule.User != "alice@example.com" || !strings.Contains(noRule.Reason, "reporter") {
		t.Errorf("no-rule refusal: %+v; want alice's identity and a reason naming reporter", *noRule)
	}
	if start.Outcome != "success" || !start.TLS || start.User != "alice@example.com" {
		t.Errorf("session start: %+v", *start)
	}
	if end.BytesOut < 100000 || end.BytesIn <= 0 || end.DurationMS < 50 {
		t.Errorf("session end: bytes in %d, out %d, duration %.1f ms; want the 100 kB answer out, the query in, at least 50 ms",
			end.BytesIn, end.BytesOut, end.DurationMS)
	}
}

// TestActivityStatementPaths: COPY both ways (psql \copy), a DO block, CALL, and protocol-level
// function calls (psql \lo_import uses libpq's FunctionCall) are each recorded with their kind.
func TestActivityStatementPaths(t *testing.T) {
	t.Parallel()
	f, tok := startGoverned(t)
	dir := t.TempDir()
	in, out, blob := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv"), filepath.Join(dir, "blob.bin")
	if err := os.WriteFile(in, []byte("1,one\n2,two\n3,three\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, []byte("large object"), 0o600); err != nil {
		t.Fatal(err)
	}
	psql := func(cmds ...string) string {
		t.Helper()
		args := []string{"-X", "-v", "ON_ERROR_STOP=1", "-At", f.dsn(tok.Token)}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		cmd := exec.Command("psql", args...)
		cmd.Env = baseEnv()
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql %q: %v\n%s", cmds, err, b)
		}
		return string(b)
	}
	psql("create table copy_t (id int, note text)",
		`\copy copy_t from '`+in+`' with (format csv)`,
		`\copy (select * from copy_t order by id) to '`+out+`' with (format csv)`,
		"do $$ begin perform 1; end $$",
		"create procedure touch_copy_t() language sql as $$ update copy_t set note = note $$",
		"call touch_copy_t()",
		`\lo_import '`+blob+`'`)
	got, err := os.ReadFile(out)
	if err != nil || string(got) != "1,one\n2,two\n3,three\n" {
		t.Fatalf("\\copy to: %q, %v", got, err)
	}

	// psql rewrites \copy into COPY ... FROM STDIN / TO STDOUT; match those loosely.
	want := []struct {
		what, kind string
		match      func(string) bool
	}{
		{"COPY FROM", "copy", func(s string) bool {
			return strings.Contains(s, "copy_t") && strings.Contains(strings.ToUpper(s), "FROM STDIN")
		}},
		{"COPY TO", "copy", func(s string) bool {
			return strings.Contains(s, "copy_t") && strings.Contains(strings.ToUpper(s), "TO STDOUT")
		}},
		{"DO", "function", func(s string) bool { return s == "do $$ begin perform 1; end $$" }},
		{"CALL", "function", func(s string) bool { return s == "call touch_copy_t()" }},
		{"FunctionCall", "function", func(s string) bool { return strings.HasPrefix(s, "-- function call: oid ") }},
	}
	find := func(recs []activityLine, match func(string) bool) []activityLine {
		var out []activityLine
		for _, r := range recs {
			if r.Type == "statement" && match(r.Statement) {
				out = append(out, r)
			}
		}
		return out
	}
	var recs []activityLine
	waitUntil(t, 15*time.Second, "every path recorded", func() bool {
		recs = activity(t, f.admin)
		for _, w := range want {
			if len(find(recs, w.match)) == 0 {
				return false
			}
		}
		return true
	})
	for _, w := range want {
		for _, r := range find(recs, w.match) {
			if r.Kind != w.kind || r.Decision != "allow" {
				t.Errorf("%s: %q recorded as kind %q, decision %q; want %q, allow", w.what, r.Statement, r.Kind, r.Decision, w.kind)
			}
		}
	}
	if c := find(recs, want[0].match); len(c) != 1 || c[0].Rows != 3 || !contains(c[0].Objects, "public.copy_t.*") {
		t.Errorf("COPY FROM: %+v; want one record, 3 rows, object public.copy_t.* (every column)", c)
	}
	if c := find(recs, want[1].match); len(c) != 1 || c[0].Rows != 3 {
		t.Errorf("COPY TO: %+v; want one record, 3 rows", c)
	}
	if c := find(recs, want[4].match); len(c) < 3 {
		t.Errorf("%d protocol function calls recorded; \\lo_import makes at least lo_creat/lo_open/lowrite", len(c))
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// filler is a statement whose record is about 100 kB, to fill a 1 MiB spool quickly.
func filler(tag string, i int) string {
	return fmt.Sprintf("select length('%s') as %s_%d", strings.Repeat("x", 100000), tag, i)
}

// TestActivitySpoolFull: with the control plane down and a 1 MiB spool, fail-closed refuses
// statements with 53000 and a message saying why, and recovers once the control plane is back;
// drop-oldest lets them through, and verify reports the dropped range as an admitted gap rather
// than tampering.
func TestActivitySpoolFull(t *testing.T) {
	t.Parallel()
	f := newPGFixture(t)
	tok := f.token(t)
	ctx := context.Background()
	tiny := []string{"--activity-spool-max-bytes", strconv.Itoa(1 << 20)}
	restartCP := func() {
		f.cp = StartControlPlane(t, ServerOptions{Args: f.cpArgs})
		f.admin = f.cp.Admin(t)
	}

	// Fail-closed (the default).
	closed := f.startSidecar(t, f.priv, tiny...)
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", f.port) })
	f.mustQuery(t, tok.Token)
	waitUntil(t, 10*time.Second, "first statement shipped", func() bool {
		return len(statementsLike(activity(t, f.admin), "SELECT 41 + 1")) == 1
	})
	f.cp.cmd.Process.Kill()
	<-f.cp.exited
	conn, err := f.connect(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	var refused error
	ran := 0
	for i := range 40 {
		if _, err := conn.Exec(ctx, filler("fail_closed", i)); err != nil {
			refused = err
			break
		}
		ran++
	}
	if refused == nil {
		t.Fatal("40 statements of 100 kB ran with a 1 MiB spool and no control plane; want a refusal")
	}
	if ran < 5 {
		t.Errorf("refused after %d statements; a 1 MiB spool holds more", ran)
	}
	if sqlstate(refused) != "53000" || !strings.Contains(refused.Error(), "activity spool is full") || !strings.Contains(refused.Error(), "not run") {
		t.Errorf("refusal: %v; want SQLSTATE 53000 saying the spool is full and the statement was not run", refused)
	}
	if _, err := conn.Exec(ctx, filler("still_full", 0)); sqlstate(err) != "53000" {
		t.Errorf("the next statement on a full spool: %v; want 53000", err)
	}
	restartCP()
	waitUntil(t, 40*time.Second, "statements run again once the spool drains", func() bool {
		_, err := conn.Exec(ctx, "select 1 as after_drain")
		return err == nil
	})
	conn.Close(ctx)
	waitUntil(t, 20*time.Second, "fail-closed records delivered", func() bool {
		return len(activity(t, f.admin, "--query", "fail_closed_")) == ran
	})
	for _, r := range activity(t, f.admin, "--query", "still_full") {
		t.Errorf("a refused statement reached the trail as if it ran: %+v", r)
	}
	closed.stop(t)

	// Drop-oldest.
	f.startSidecar(t, f.priv, append(tiny, "--activity-when-full", "drop-oldest")...)
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", f.port) })
	f.mustQuery(t, tok.Token)
	waitUntil(t, 10*time.Second, "first statement of the second instance shipped", func() bool {
		return len(statementsLike(activity(t, f.admin), "SELECT 41 + 1")) == 2
	})
	f.cp.cmd.Process.Kill()
	<-f.cp.exited
	conn, err = f.connect(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := conn.Exec(ctx, filler("drop_oldest", i)); err != nil {
			t.Fatalf("statement %d with drop-oldest: %v", i, err)
		}
	}
	if _, err := conn.Exec(ctx, "select 'last' as drop_oldest_last"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	restartCP()
	waitUntil(t, 40*time.Second, "the last statement delivered", func() bool {
		return len(activity(t, f.admin, "--query", "drop_oldest_last")) == 1
	})
	if n := len(activity(t, f.admin, "--query", "drop_oldest_")); n >= 41 {
		t.Errorf("%d of 41 statements in the trail; a 1 MiB spool cannot have kept 4 MB", n)
	}
	if len(activity(t, f.admin, "--type", "spool.dropped")) == 0 {
		t.Error("no spool.dropped record in the trail")
	}
	res := f.admin.Run("activity", "verify")
	if res.Code != 0 || !strings.Contains(res.Stdout, "Admitted gap") || !strings.Contains(res.Stdout, "OK") {
		t.Errorf("activity verify after an admitted drop: %s", res)
	}
	var v struct {
		OK       bool              `json:"ok"`
		Problems []json.RawMessage `json:"problems"`
		Admitted []struct {
			From, To uint64
		} `json:"admitted"`
	}
	f.admin.MustRunJSON(&v, "activity", "verify")
	if !v.OK || len(v.Problems) != 0 || len(v.Admitted) == 0 {
		t.Errorf("activity verify --output json: ok %v, problems %s, admitted %+v; want ok, none, the dropped range", v.OK, v.Problems, v.Admitted)
	}
}

// TestActivityRetentionSetting: `gatehouse settings` reads and changes the activity retention.
func TestActivityRetentionSetting(t *testing.T) {
	t.Parallel()
	admin := StartControlPlane(t, ServerOptions{}).Admin(t)
	if got := strings.TrimSpace(admin.MustRun("settings", "get", "activity-retention")); got != "90d" {
		t.Errorf("default activity-retention %q, want 90d", got)
	}
	admin.MustRun("settings", "set", "activity-retention", "30d")
	if got := strings.TrimSpace(admin.MustRun("settings", "get", "activity-retention")); got != "30d" {
		t.Errorf("activity-retention after set: %q, want 30d", got)
	}
	res := admin.Run("settings", "set", "activity-retention", "10m")
	if res.Code == 0 || !strings.Contains(res.Stderr, "at least 1h") {
		t.Errorf("a retention under 1h: %s", res)
	}
	if got := strings.TrimSpace(admin.MustRun("settings", "get", "activity-retention")); got != "30d" {
		t.Errorf("activity-retention after a refused set: %q, want 30d", got)
	}
}
