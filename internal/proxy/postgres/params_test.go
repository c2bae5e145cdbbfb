package postgres

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgproto3"

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

func TestBindParams(t *testing.T) {
	long := strings.Repeat("é", maxParamBytes) // 2 bytes a rune: the cut falls between runes
	tests := []struct {
		name    string
		formats []int16
		params  [][]byte
		want    []string
	}{
		{"text", nil, [][]byte{[]byte("alice"), []byte("42")}, []string{"alice", "42"}},
		{"null", nil, [][]byte{nil, []byte("x")}, []string{"NULL", "x"}},
		{"binary for all", []int16{1}, [][]byte{{0, 0, 0, 7}}, []string{`\x00000007`}},
		{"mixed formats", []int16{0, 1}, [][]byte{[]byte("t"), {0xff}}, []string{"t", `\xff`}},
		{"long binary by size", []int16{1}, [][]byte{make([]byte, maxParamHexBytes+1)}, []string{"<binary 65 bytes>"}},
		{"long text cut", nil, [][]byte{[]byte(long)}, []string{long[:maxParamBytes] + "…[truncated, 2048 bytes]"}},
		{"invalid UTF-8 replaced", nil, [][]byte{{'a', 0xff, 'b'}}, []string{"a\uFFFDb"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := (&pgproto3.Bind{ParameterFormatCodes: tc.formats, Parameters: tc.params}).Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			got := bindParams(afterNames(msg))
			if tc.name == "total bounded" {
				if len(got) != 2 || got[0] != strings.Repeat("a", 1000) || got[1] != strings.Repeat("b", 1000) {
					t.Errorf("two small values: %q", got)
				}
				many := make([][]byte, 40)
				for i := range many {
					many[i] = []byte(strings.Repeat("x", maxParamBytes))
				}
				msg, _ := (&pgproto3.Bind{Parameters: many}).Encode(nil)
				got = bindParams(msg[7:])
				if want := maxParamsTotalBytes / maxParamBytes; len(got) != want+1 || got[want] != "<24 more parameters not recorded>" {
					t.Errorf("40 values of 1 KiB: %d recorded, last %q", len(got), got[len(got)-1])
				}
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// afterNames returns what follows a Bind's portal and statement names (both empty here), which is
// what the engine passes to bindParams.
func afterNames(msg []byte) []byte { return msg[5+2:] }

func TestBindParamsTotal(t *testing.T) {
	many := make([][]byte, 40)
	for i := range many {
		many[i] = []byte(strings.Repeat("x", maxParamBytes))
	}
	msg, err := (&pgproto3.Bind{Parameters: many}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := bindParams(afterNames(msg))
	kept := maxParamsTotalBytes / maxParamBytes
	if len(got) != kept+1 || got[kept] != fmt.Sprintf("<%d more parameters not recorded>", 40-kept) {
		t.Errorf("40 values of %d bytes: %d entries, the last %q", maxParamBytes, len(got), got[len(got)-1])
	}
}
