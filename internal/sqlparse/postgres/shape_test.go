package postgres

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse/internal/policy"
	"github.com/google/go-cmp/cmp"
)

func TestShape(t *testing.T) {
	tests := []struct {
		name, sql string
		want      string // "" with ok false
	}{
		{"no literals", "SELECT * FROM orders", "SELECT * FROM orders"},
		{"pgbench", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;", "SELECT abalance FROM pgbench_accounts WHERE aid = \x00;"},
		{"numbers", "SELECT 1, 1.5, 12.25e-3, 7E+2, 3e4, 99999999999", "SELECT \x00, \x00, \x00, \x00, \x00, \x00"},
		{"signed", "SELECT -1, +2, 3-4", "SELECT -\x00, +\x00, \x00-\x00"},
		{"strings", "SELECT 'a', '', 'it''s', '--', '/* x'", "SELECT \x01, \x01, \x01, \x01, \x01"},
		{"string continuation", "SELECT 'a'\n'b'", "SELECT \x01\n\x01"},
		{"typed literal", "SELECT date '2024-01-01', interval '1 day'", "SELECT date \x01, interval \x01"},
		{"line comment", "SELECT 1 -- trace 42\nFROM t", "SELECT \x00  \nFROM t"},
		{"line comment to CR", "SELECT 1 --x\rFROM t", "SELECT \x00  \rFROM t"},
		{"line comment at end", "SELECT 1 --x", "SELECT \x00  "},
		{"block comment", "/* traceparent='00-ab' */ SELECT 1", "\x02 SELECT \x00"},
		{"nested block comment", "SELECT /* a /* b */ c */ 1", "SELECT \x02 \x00"},
		{"comment inside operator", "SELECT 1 +/* c */-- d\n 2", "SELECT \x00 +\x02 \n \x00"},
		{"quoted identifiers", `SELECT "a'b", "x""1", "2" FROM "t"`, `SELECT "a'b", "x""1", "2" FROM "t"`},
		{"identifiers with digits", "SELECT col1, t2.c3, a$1 FROM t9", "SELECT col1, t2.c3, a$1 FROM t9"},
		{"parameters", "SELECT $1, $12 FROM t WHERE a = 5", "SELECT $1, $12 FROM t WHERE a = \x00"},
		{"type cast", "SELECT 1::int, '2'::text", "SELECT \x00::int, \x01::text"},
		{"array subscript range", "SELECT a[1:2], ARRAY[1, 2]", "SELECT a[\x00:\x00], ARRAY[\x00, \x00]"},
		{"generic type modifiers", "SELECT x::mytype(3)", "SELECT x::mytype(\x00)"},
		{"in list", "SELECT * FROM t WHERE id IN (1, 2) LIMIT 10 OFFSET 5", "SELECT * FROM t WHERE id IN (\x00, \x00) LIMIT \x00 OFFSET \x00"},
		{"fetch first", "SELECT * FROM t FETCH FIRST 5 ROWS ONLY", "SELECT * FROM t FETCH FIRST \x00 ROWS ONLY"},
		{"non-ASCII", "SELECT 'é' FROM tè1", "SELECT \x01 FROM tè1"},

		{"escape string", `SELECT E'a'`, ""},
		{"escape string lower", `SELECT e'a'`, ""},
		{"bit string", `SELECT B'101'`, ""},
		{"hex string", `SELECT X'1F'`, ""},
		{"national string", `SELECT N'a'`, ""},
		{"unicode string", `SELECT U&'a'`, ""},
		{"unicode identifier", `SELECT U&"a" UESCAPE '!'`, ""},
		{"name before quote", `SELECT abc'x'`, ""},
		{"backslash", `SELECT 'a\'`, ""},
		{"dollar quote", `SELECT $$a$$`, ""},
		{"tagged dollar quote", `SELECT $x$a$x$`, ""},
		{"stray dollar", `SELECT $ 1`, ""},
		{"unterminated string", `SELECT 'a`, ""},
		{"unterminated identifier", `SELECT "a`, ""},
		{"unterminated comment", `SELECT /* a /* b */ 1`, ""},
		{"hex number", `SELECT 0x1F`, ""},
		{"octal number", `SELECT 0o17`, ""},
		{"binary number", `SELECT 0b101`, ""},
		{"underscores", `SELECT 1_000`, ""},
		{"trailing junk", `SELECT 12abc`, ""},
		{"exponent without digits", `SELECT 1e`, ""},
		{"trailing dot", `SELECT 1.`, ""},
		{"two dots", `SELECT 1..2`, ""},
		{"leading dot", `SELECT .5`, ""},
		{"dot number", `SELECT 1.5.2`, ""},
		{"NUL", "SELECT 1\x00", ""},
		{"placeholder byte", "SELECT \x01", ""},
		{"comment byte", "SELECT 1 \x02", ""},
		{"invalid UTF-8", "SELECT '\xff'", ""},
		{"float precision", "SELECT x::float(24)", ""},
		{"varchar length", "SELECT CAST(x AS varchar (10))", ""},
		{"character varying", "SELECT x::character varying(10)", ""},
		{"timestamp precision", "SELECT x::timestamp /* p */ (3)", ""},
		{"interval precision", "SELECT interval(3) '1 s'", ""},
		{"interval second", "SELECT interval '1' second(3)", ""},
		{"current_timestamp", "SELECT CURRENT_TIMESTAMP(3)", ""},
		{"array bound", "SELECT x::int[3]", ""},
		{"subscript", "SELECT a[1] FROM t", ""},
		{"fetch", "FETCH 5 FROM c", ""},
		{"move", "/* c */ MOVE 5 IN c", ""},
		{"explain", "EXPLAIN (FORMAT 'json') SELECT 1", ""},
		{"explain after semicolon", "SELECT 1; explain SELECT 2", ""},
		{"too long", "SELECT " + strings.Repeat("1,", policy.DefaultMaxText/2) + "1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Shape(nil, tt.sql)
			if tt.want == "" {
				if ok {
					t.Errorf("Shape(%q) = %q, want no shape", tt.sql, got)
				}
				return
			}
			if !ok {
				t.Fatalf("Shape(%q): no shape, want %q", tt.sql, tt.want)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("Shape(%q) (-want +got):\n%s", tt.sql, diff)
			}
		})
	}
}

func TestShapeAppends(t *testing.T) {
	dst := []byte("prefix:")
	got, ok := Shape(dst, "SELECT 1")
	if !ok || string(got) != "prefix:SELECT \x00" {
		t.Errorf("Shape = %q, %v", got, ok)
	}
	if got, ok := Shape(dst, "SELECT 1, 2, E'x'"); ok || string(got) != "prefix:" {
		t.Errorf("Shape of a refused text = %q, %v; want dst as it was", got, ok)
	}
	if n := testing.AllocsPerRun(100, func() {
		got, _ = Shape(got[:0], "SELECT abalance FROM pgbench_accounts WHERE aid = 48213 /* x */;")
	}); n != 0 {
		t.Errorf("Shape allocates %v times", n)
	}
}

// Replacement literals for the variants FuzzShape and TestShapeKeyProperty build: each literal of
// the input is replaced by one of these, so that its kind stays and its value (and for numbers its
// class: integer, big integer, decimal) changes.
var (
	numberAlts = []string{"0", "7", "1.5", "99999999999", "2e3", "31E-2", "123456789012345678901234567890.25", "2147483648"}
	stringAlts = []string{"''", "'x'", "'it''s'", "'a\nb'", "'é'", "'--'", "'/*'", "';'", "' '"}
)

// variant returns sql with its n-th set of replacement literals and comments; ok false when Shape
// refuses sql.
func variant(sql string, n int) (string, bool) {
	var b strings.Builder
	l := lexer{sql: sql}
	lit := 0
	for {
		t, ok := l.next()
		if !ok {
			break
		}
		text := sql[t.start:t.end]
		switch t.kind {
		case tokNumber:
			text = pick(numberAlts, n+lit, text)
			lit++
		case tokString:
			text = pick(stringAlts, n+lit, text)
			lit++
		case tokLineComment:
			if n%2 == 1 {
				text = "-- v" + strings.Repeat("'", n%3)
			}
		case tokBlockComment:
			if n%2 == 1 {
				text = "/* v /* ' */ */"
			}
		}
		b.WriteString(text)
	}
	return b.String(), !l.bad
}

// pick returns alts[i%len(alts)], or the next one if that is the literal being replaced.
func pick(alts []string, i int, old string) string {
	s := alts[i%len(alts)]
	if s == old {
		s = alts[(i+1)%len(alts)]
	}
	return s
}

func withoutText(sts []policy.Statement) []policy.Statement {
	out := make([]policy.Statement, len(sts))
	for i, st := range sts {
		st.Text = ""
		out[i] = st
	}
	return out
}

// checkKeyProperty checks Shape's promise on sql and some variants of it: the same key, and the
// same classification apart from Text whenever that classification is one a cache keeps by shape.
func checkKeyProperty(t *testing.T, sql string) {
	t.Helper()
	key, ok := Shape(nil, sql)
	if !ok {
		return
	}
	want, werr := Classify(sql)
	for n := 0; n < 3; n++ {
		v, ok := variant(sql, n)
		if !ok {
			t.Fatalf("variant(%q): the lexer refused what Shape accepted", sql)
		}
		vkey, ok := Shape(nil, v)
		if !ok || string(vkey) != string(key) {
			t.Errorf("Shape(%q) = %q, %v; Shape(%q) = %q", v, vkey, ok, sql, key)
			continue
		}
		got, gerr := Classify(v)
		if !policy.Shapeable(want) && !policy.Shapeable(got) {
			continue
		}
		if werr != nil || gerr != nil {
			t.Errorf("Classify(%q): %v; Classify(%q): %v", sql, werr, v, gerr)
			continue
		}
		if diff := cmp.Diff(withoutText(want), withoutText(got)); diff != "" {
			t.Errorf("same shape, different classification:\n%q\n%q\n(-first +second):\n%s", sql, v, diff)
		}
	}
}

// shapeSeeds are texts whose literals sit in every kind of place, including the ones where
// PostgreSQL's grammar does not take a literal as a value.
var shapeSeeds = []string{
	"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
	"UPDATE pgbench_accounts SET abalance = abalance + -2765 WHERE aid = 48213;",
	"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -2765, CURRENT_TIMESTAMP);",
	"DELETE FROM orders WHERE id = 1 AND note = 'x' /* trace 1 */",
	"/* controller='users',traceparent='00-4bf92f-01' */ SELECT name FROM users WHERE id = 42",
	"SELECT 'a'\n'b' FROM t",
	"SELECT 'a' -- c\n'b' FROM t",
	"SELECT 'a' /* c */\n'b' FROM t",
	"SELECT 'a'\n/* c */'b' FROM t",
	"SELECT * FROM t WHERE a IN (1, 2, 3) ORDER BY 1 LIMIT 10 OFFSET 5",
	"SELECT * FROM t FETCH FIRST 5 ROWS ONLY",
	"SELECT * FROM t OFFSET 2 ROWS FETCH NEXT 1 ROW WITH TIES",
	"SELECT x::numeric(10, 2), y::mytype(3), z::varchar(10) FROM t",
	"SELECT x::float(24) FROM t",
	"SELECT CAST(x AS char(3)) FROM t",
	"SELECT x::int[3] FROM t",
	"SELECT a[1], a[1:2], ARRAY[1, 2] FROM t",
	"SELECT CURRENT_TIMESTAMP(3), LOCALTIME(2)",
	"SELECT interval '1' day, interval(3) '1 s', interval '1' second(3)",
	"SELECT date '2024-01-01', int4 '1', 'x'::regclass",
	"FETCH 5 FROM c",
	"MOVE ABSOLUTE -5 IN c",
	"EXPLAIN (FORMAT 'json', COSTS 1) SELECT 1",
	"DECLARE c CURSOR FOR SELECT * FROM t WHERE a = 1",
	"SELECT 1 +/* c */- 2",
	"SELECT 1-1, 1--1\n",
	"SELECT * FROM t WHERE a = $1 AND b = 2",
	"SELECT $1a",
	"SELECT 1 x, 2 AS y, 'z' w",
	"SELECT * FROM t TABLESAMPLE BERNOULLI (10) REPEATABLE (1)",
	"SELECT count(*) OVER (ORDER BY a ROWS BETWEEN 1 PRECEDING AND 2 FOLLOWING) FROM t",
	"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 10) CYCLE n SET c TO 'y' DEFAULT 'n' USING p SELECT * FROM r",
	"INSERT INTO t VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET v = 'b' WHERE t.v <> 'c'",
	"SELECT JSON_OBJECT('a' VALUE 1), JSON_ARRAY(1, 'x'), '{}'::jsonb -> 'a'",
	"SELECT * FROM JSON_TABLE('[1]'::jsonb, '$[*]' COLUMNS (a int PATH '$', b varchar(3) PATH '$'))",
	"SELECT * FROM XMLTABLE('/r' PASSING '<r/>'::xml COLUMNS a int PATH 'a' DEFAULT 1)",
	"SELECT XMLPARSE(DOCUMENT '<a/>'), XMLELEMENT(NAME x, XMLATTRIBUTES('v' AS a))",
	"SELECT x COLLATE \"C\" FROM t WHERE y LIKE 'a%' ESCAPE '!'",
	"SELECT * FROM t FOR UPDATE OF t SKIP LOCKED",
	"SELECT 1 UNION SELECT 2 ORDER BY 1",
	"SELECT 1; SELECT 2",
	"SELECT 1;; INSERT INTO t VALUES (2)",
	"SET search_path = 'a'",
	"SELECT set_config('search_path', 'x', false)",
	"COPY t FROM '/f'",
	"CREATE SEQUENCE s START 1 INCREMENT 2",
	"SELECT 1 AS \"x\"\"y\", \"a'b\" FROM \"t\"",
}

func TestShapeKeyProperty(t *testing.T) {
	for _, sql := range shapeSeeds {
		checkKeyProperty(t, sql)
	}
}

// Fragments and templates for TestShapeKeyPropertyGenerated: keywords, type names, literals and
// punctuation from the corners of PostgreSQL's grammar, put together at random. Byte-level fuzzing
// rarely writes a keyword; this finds places where the grammar does not treat a literal as a value.
var (
	shapeFragments = []string{
		"SELECT", "FROM", "WHERE", "t", "u.a", "a", "b", "(", ")", "[", "]", ",", "=", "+", "-", "*", "::",
		"int", "text", "1", "2.5", "'x'", "'y'", "AS", "ORDER BY", "LIMIT", "OFFSET", "GROUP BY", "HAVING",
		"IN", "AND", "OR", "NOT", "VALUES", "RETURNING", "CAST", "numeric", "bpchar", "varchar", "char",
		"bit", "interval", "timestamp", "time", "with", "without", "time zone", "double precision", "real",
		"ARRAY", "ROW", "CASE", "WHEN", "THEN", "ELSE", "END", "IS", "NULL", "TRUE", "LIKE", "ESCAPE",
		"BETWEEN", "SYMMETRIC", "DISTINCT", "ON", "JOIN", "USING", "LATERAL", "FETCH", "FIRST", "NEXT",
		"ROWS", "ONLY", "TIES", "FOR UPDATE", "SKIP LOCKED", "OVER", "PARTITION BY", "RANGE", "PRECEDING",
		"FOLLOWING", "CURRENT ROW", "UNBOUNDED", "TABLESAMPLE", "SYSTEM", "REPEATABLE", "COLLATE", "\"C\"",
		"AT", "LOCAL", "OVERLAPS", "ANY", "ALL", "EXISTS", "UNION", "EXCEPT", "DEFAULT", "ON CONFLICT",
		"DO NOTHING", "OVERRIDING", "SYSTEM VALUE", "JSON", "JSON_OBJECT", "JSON_ARRAY", "KEY", "VALUE",
		"IS JSON", "FORMAT JSON", "XMLPARSE", "DOCUMENT", "XMLELEMENT", "NAME", "CURRENT_TIME",
		"LOCALTIMESTAMP", "second", "minute", "day", "to", "year", "precision", "float", "dec", "decimal",
		"smallint", "national", "character", "varying", "nchar", "SEARCH", "DEPTH FIRST BY", "CYCLE", "SET",
		"TO", "MATERIALIZED", "ORDINALITY", "ROWS FROM", "IS DISTINCT FROM", "NORMALIZED", "NFC",
		"UESCAPE", "COLUMNS", "PATH", "JSON_TABLE", "DECLARE", "c", "CURSOR", "MOVE", "ABSOLUTE",
		"FORWARD", "PRIOR", "0", "10", "99999999999", "'1 day'", "'2024-01-01'", "$1", "%", "^", "~", "<",
		">", "||", ";", "TABLE", "NULLS", "DESC", "GROUPING SETS", "CUBE", "FILTER", "WITHIN GROUP",
		"EXPLAIN", "-- c\n", "/* c */", "\n",
	}
	shapeTemplates = []string{
		"SELECT @ FROM t", "SELECT a @ FROM t", "SELECT a FROM t WHERE a = @", "SELECT a FROM t WHERE a @ 1",
		"SELECT a FROM t @", "SELECT a::@ FROM t", "SELECT CAST(a AS @) FROM t", "SELECT @ 'x'", "SELECT @ 1",
		"SELECT @(1) FROM t", "SELECT @(1, 2) FROM t", "SELECT a FROM t ORDER BY @", "SELECT a FROM t LIMIT @",
		"INSERT INTO t VALUES (@)", "INSERT INTO t (a) @ VALUES (1)", "UPDATE t SET a = @ WHERE b = 2",
		"DELETE FROM t WHERE @ = 3", "@ 5 FROM c", "@ SELECT 1", "SELECT a FROM t @ 1 @", "SELECT a[@] FROM t",
		"SELECT 1 FROM t WHERE a IN (@)", "WITH x AS (SELECT 1) SELECT @ FROM x", "SELECT 'a' @ 'b'",
	}
)

func TestShapeKeyPropertyGenerated(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	tested := 0
	for i := 0; i < 20000; i++ {
		var sql string
		if r.Intn(3) == 0 {
			parts := make([]string, 3+r.Intn(12))
			for j := range parts {
				parts[j] = shapeFragments[r.Intn(len(shapeFragments))]
			}
			parts[0] = "SELECT"
			sql = strings.Join(parts, " ")
		} else {
			mid := make([]string, 1+r.Intn(6))
			for j := range mid {
				mid[j] = shapeFragments[r.Intn(len(shapeFragments))]
			}
			sql = strings.Replace(shapeTemplates[r.Intn(len(shapeTemplates))], "@", strings.Join(mid, " "), 1)
		}
		if key, ok := Shape(nil, sql); !ok || string(key) == sql {
			continue
		}
		if sts, err := Classify(sql); err != nil || !policy.Shapeable(sts) {
			continue
		}
		tested++
		checkKeyProperty(t, sql)
	}
	if tested < 100 {
		t.Errorf("only %d generated texts were shapeable; the generator is broken", tested)
	}
}

func FuzzShape(f *testing.F) {
	for _, sql := range shapeSeeds {
		f.Add(sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		key, ok := Shape(nil, sql)
		if !ok {
			return
		}
		again, _ := Shape([]byte("x"), sql)
		if string(again[1:]) != string(key) {
			t.Fatalf("Shape(%q) depends on dst", sql)
		}
		checkKeyProperty(t, sql)
	})
}

func BenchmarkShape(b *testing.B) {
	const q = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"
	b.ReportAllocs()
	b.SetBytes(int64(len(q)))
	var dst []byte
	for b.Loop() {
		dst, _ = Shape(dst[:0], q)
	}
}
