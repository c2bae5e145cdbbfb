package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// activityLine is one line of `gatehouse activity list --output jsonl`.
type activityLine struct {
	Seq            uint64   `json:"seq"`
	Type           string   `json:"type"`
	Time           string   `json:"time"`
	InstanceID     string   `json:"instance_id"`
	SessionID      string   `json:"session_id"`
	User           string   `json:"user"`
	Repository     string   `json:"repository"`
	RepositoryUser string   `json:"repository_user"`
	Outcome        string   `json:"outcome"`
	Reason         string   `json:"reason"`
	Statement      string   `json:"statement"`
	Kind           string   `json:"kind"`
	Objects        []string `json:"objects"`
	Decision       string   `json:"decision"`
	Rule           string   `json:"rule"`
	Mode           string   `json:"mode"`
	Rows           int64    `json:"rows"`
	ErrorCode      string   `json:"error_code"`
	Params         []string `json:"params"`
	Application    string   `json:"application"`
	TLS            bool     `json:"tls"`
	DurationMS     float64  `json:"duration_ms"`
	BytesIn        int64    `json:"bytes_in"`
	BytesOut       int64    `json:"bytes_out"`
}

// activity lists the trail with `gatehouse activity list --output jsonl` and more flags.
func activity(t *testing.T, admin *CLI, args ...string) []activityLine {
	t.Helper()
	out := admin.MustRun(append([]string{"activity", "list", "--since", "1h", "--output", "jsonl"}, args...)...)
	var recs []activityLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r activityLine
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("activity list line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// statementsLike returns the statement records whose text has prefix.
func statementsLike(recs []activityLine, prefix string) []activityLine {
	var out []activityLine
	for _, r := range recs {
		if r.Type == "statement" && strings.HasPrefix(r.Statement, prefix) {
			out = append(out, r)
		}
	}
	return out
}

func (f *pgFixture) dsn(token string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=require password=%s", f.port, token)
}

func startGoverned(t *testing.T) (*pgFixture, createdToken) {
	t.Helper()
	f := newPGFixture(t)
	f.startSidecar(t, f.priv)
	tok := f.token(t)
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", f.port) })
	return f, tok
}

// TestActivityClients runs psql, pgx (simple and extended, prepared statements) and pgbench -M
// prepared through a sidecar, and finds every statement they sent in the trail exactly once, with
// the right identity.
func TestActivityClients(t *testing.T) {
	t.Parallel()
	f, tok := startGoverned(t)
	ctx := context.Background()

	// psql, simple protocol, with a multi-statement query.
	psql := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", f.dsn(tok.Token), "-c", "create table psql_t (id int); insert into psql_t values (1), (2); select count(*) from psql_t")
	psql.Env = baseEnv()
	if out, err := psql.CombinedOutput(); err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "\n2") {
		t.Fatalf("psql: %v\n%s", err, out)
	}

	// pgx: simple protocol, extended protocol, and a named prepared statement run three times.
	conn, err := f.connect(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "create table pgx_t (id int, secret text)", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Prepare(ctx, "ins", "insert into pgx_t values ($1, $2)"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := conn.Exec(ctx, "ins", i, "bind-value-must-not-be-recorded"); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "select count(*) from pgx_t where id >= $1", 0).Scan(&n); err != nil || n != 3 {
		t.Fatalf("count: %d, %v", n, err)
	}
	conn.Close(ctx)

	// pgbench -M prepared: TPC-B, seven statements per transaction.
	env := append(baseEnv(), "PGPASSWORD="+tok.Token, "PGSSLMODE=require")
	pgArgs := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(f.port), "-U", "postgres", "postgres"}
	initCmd := exec.Command("pgbench", append([]string{"-i", "-s", "1", "-q"}, pgArgs...)...)
	initCmd.Env = env
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	bench := exec.Command("pgbench", append([]string{"-M", "prepared", "-n", "-c", "2", "-t", "25"}, pgArgs...)...)
	bench.Env = env
	out, err := bench.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("pgbench output without a transaction count:\n%s", out)
	}
	txs, _ := strconv.Atoi(string(m[1]))

	script := []string{"BEGIN", "UPDATE pgbench_accounts", "SELECT abalance", "UPDATE pgbench_tellers", "UPDATE pgbench_branches", "INSERT INTO pgbench_history", "END"}
	var recs []activityLine
	waitUntil(t, 30*time.Second, "every statement in the trail", func() bool {
		recs = activity(t, f.admin)
		if len(statementsLike(recs, "UPDATE pgbench_accounts")) < txs {
			return false
		}
		for _, want := range []string{"select count(*) from psql_t", "select count(*) from pgx_t"} {
			if len(statementsLike(recs, want)) == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // anything still in flight would show up as a duplicate now
	recs = activity(t, f.admin)
	for _, prefix := range script {
		if got := len(statementsLike(recs, prefix)); got != txs {
			t.Errorf("%q recorded %d times; pgbench ran %d transactions", prefix, got, txs)
		}
	}
	wantOnce := map[string]int{
		"create table psql_t (id int)":              1,
		"insert into psql_t values (1), (2)":        1,
		"select count(*) from psql_t":               1,
		"create table pgx_t (id int, secret text)":  1,
		"insert into pgx_t values ($1, $2)":         3,
		"select count(*) from pgx_t where id >= $1": 1,
	}
	for text, want := range wantOnce {
		if got := len(exactStatements(recs, text)); got != want {
			t.Errorf("%q recorded %d times, want %d", text, got, want)
		}
	}
	starts := 0
	for _, r := range recs {
		if r.Type == "statement" || r.Type == "session.start" || r.Type == "session.end" {
			if r.User != "alice@example.com" || r.Repository != "app" || r.RepositoryUser != "postgres" {
				t.Errorf("record with the wrong identity: %+v", r)
			}
		}
		if r.Type == "session.start" {
			starts++
		}
	}
	if starts < 5 {
		t.Errorf("%d session.start records; want one per session (psql, pgx, pgbench -i, two pgbench clients)", starts)
	}
	if c := exactStatements(recs, "insert into psql_t values (1), (2)"); len(c) == 1 && c[0].Rows != 2 {
		t.Errorf("insert recorded with %d rows, want 2", c[0].Rows)
	}
	raw := f.admin.MustRun("activity", "list", "--since", "1h", "--output", "json")
	if strings.Contains(raw, "bind-value-must-not-be-recorded") {
		t.Error("a bind parameter value reached the activity trail")
	}
	res := f.admin.Run("activity", "verify", "--since", "1h")
	if res.Code != 0 || !strings.Contains(res.Stdout, "OK") {
		t.Errorf("activity verify: %s", res)
	}
}

func exactStatements(recs []activityLine, text string) []activityLine {
	var out []activityLine
	for _, r := range recs {
		if r.Type == "statement" && r.Statement == text {
			out = append(out, r)
		}
	}
	return out
}

// TestActivityOutage: statements run while the control plane is down are spooled and arrive
// complete and in order once it is back; an edited or deleted record is then reported by verify.
func TestActivityOutage(t *testing.T) {
	t.Parallel()
	f, tok := startGoverned(t)
	ctx := context.Background()
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
	for i := range 50 {
		if _, err := conn.Exec(ctx, fmt.Sprintf("select %d as during_outage", i)); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)

	f.cp = StartControlPlane(t, ServerOptions{Args: f.cpArgs})
	f.admin = f.cp.Admin(t)
	var recs []activityLine
	waitUntil(t, 40*time.Second, "spooled activity delivered", func() bool {
		recs = activity(t, f.admin, "--query", "during_outage")
		return len(recs) >= 50
	})
	for i, r := range recs {
		if want := fmt.Sprintf("select %d as during_outage", i); r.Statement != want {
			t.Fatalf("record %d is %q, want %q (complete and in order)", i, r.Statement, want)
		}
		if i > 0 && r.Seq <= recs[i-1].Seq {
			t.Fatalf("record %d has seq %d after %d", i, r.Seq, recs[i-1].Seq)
		}
	}
	if res := f.admin.Run("activity", "verify"); res.Code != 0 {
		t.Fatalf("verify before tampering: %s", res)
	}

	// Tamper with the store directly.
	db := filepath.Join(f.cpArgs[1], "gatehouse.db")
	if _, err := os.Stat(db); err != nil {
		t.Fatal(err)
	}
	sqlite := func(q string) {
		t.Helper()
		if out, err := exec.Command("sqlite3", db, q).CombinedOutput(); err != nil {
			t.Fatalf("sqlite3 %s: %v\n%s", q, err, out)
		}
	}
	edited, deleted := recs[10], recs[20]
	sqlite(fmt.Sprintf(`UPDATE activity SET record = replace(record, 'select 10 as', 'select 99 as') WHERE instance_id = '%s' AND seq = %d`, edited.InstanceID, edited.Seq))
	sqlite(fmt.Sprintf(`DELETE FROM activity WHERE instance_id = '%s' AND seq = %d`, deleted.InstanceID, deleted.Seq))
	res := f.admin.Run("activity", "verify", "--output", "json")
	if res.Code == 0 {
		t.Fatalf("verify passed after tampering: %s", res)
	}
	var v struct {
		Problems []struct {
			Seq  uint64 `json:"seq"`
			Kind string `json:"kind"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &v); err != nil {
		t.Fatalf("verify output: %v\n%s", err, res)
	}
	found := map[string]bool{}
	for _, p := range v.Problems {
		if p.Kind == "edited" && p.Seq == edited.Seq {
			found["edited"] = true
		}
		if p.Kind == "gap" && p.Seq == deleted.Seq+1 {
			found["gap"] = true
		}
	}
	if !found["edited"] || !found["gap"] {
		t.Errorf("verify problems %+v; want the edit of seq %d and the gap at %d", v.Problems, edited.Seq, deleted.Seq)
	}
}
