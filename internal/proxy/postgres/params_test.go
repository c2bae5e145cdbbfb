package postgres

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
)

func TestApplicationName(t *testing.T) {
	long := strings.Repeat("x", 80)
	tests := []struct {
		name, client, user, want string
	}{
		{"no client name", "", "alice@example.com", "gatehouse:alice@example.com"},
		{"client name", "psql", "alice@example.com", "psql (gatehouse:alice@example.com)"},
		{"client name shortened first", long, "alice@example.com", strings.Repeat("x", 63-len(" (gatehouse:alice@example.com)")) + " (gatehouse:alice@example.com)"},
		{"long user", "psql", strings.Repeat("u", 70), ("gatehouse:" + strings.Repeat("u", 70))[:63]},
		{"multibyte cut", strings.Repeat("é", 30), "a@b.c", strings.Repeat("é", 22) + " (gatehouse:a@b.c)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := applicationName(tc.client, tc.user)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if len(got) > maxApplicationName {
				t.Errorf("%d bytes", len(got))
			}
		})
	}
}

func TestUpstreamParams(t *testing.T) {
	target := proxy.Target{Repository: gatehouse.Repository{Database: "sales"}, User: gatehouse.RepositoryUser{Username: "app"}}
	id := proxy.Identity{User: "alice@example.com"}
	tests := []struct {
		name   string
		client map[string]string
		want   map[string]string
	}{
		{"libpq default database is the typed user name",
			map[string]string{"user": "app@sales", "database": "app@sales", "client_encoding": "UTF8", "replication": "database"},
			map[string]string{"user": "app", "database": "sales", "client_encoding": "UTF8", "application_name": "gatehouse:alice@example.com"}},
		{"database asked for",
			map[string]string{"user": "app", "database": "other", "application_name": "psql", "options": "-c search_path=x"},
			map[string]string{"user": "app", "database": "other", "options": "-c search_path=x", "application_name": "psql (gatehouse:alice@example.com)"}},
		{"no database",
			map[string]string{"user": "app"},
			map[string]string{"user": "app", "database": "sales", "application_name": "gatehouse:alice@example.com"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, upstreamParams(tc.client, target, id)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMD5Password(t *testing.T) {
	// "md5" || md5hex(md5hex("secret" || "alice") || salt), computed independently.
	got := md5Password("alice", "secret", [4]byte{1, 2, 3, 4})
	if diff := cmp.Diff("md598a0412b9c31436fc53776e863350083", got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
