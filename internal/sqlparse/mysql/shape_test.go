package mysql

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
		{"sysbench", "SELECT c FROM sbtest1 WHERE id=48213", "SELECT c FROM sbtest1 WHERE id=\x00"},
		{"numbers", "SELECT 1, 1.5, 12.25e-3, 7E+2, 3e4, 0123, 1234567890123456789", "SELECT \x00, \x03, \x04, \x04, \x04, \x00, \x00"},
		{"signed", "SELECT -1, +2, 3-4, 1--1", "SELECT -\x00, +\x00, \x00-\x00, \x00--\x00"},
		{"strings", "SELECT 'a', '', 'it''s', '--', '/* x', '#'", "SELECT \x01, \x01, \x01, \x01, \x01, \x01"},
		{"adjacent strings", "SELECT 'a' 'b', 'c'/* x */'d'", "SELECT \x01 \x01, \x01\x02\x01"},
		{"hash comment", "SELECT 1 # trace 42\nFROM t", "SELECT \x00 \x02\nFROM t"},
		{"dash comment", "SELECT 1 -- trace 42\nFROM t", "SELECT \x00 \x02\nFROM t"},
		{"dash comment tab", "SELECT 1 --\tx", "SELECT \x00 \x02"},
		{"dash comment newline", "SELECT 1 --\nFROM t", "SELECT \x00 \x02\nFROM t"},
		{"block comment", "/* traceparent='00-ab' */ SELECT 1", "\x02 SELECT \x00"},
		{"block comment not nested", "SELECT /* a /* b */ 1", "SELECT \x02 \x00"},
		{"empty block comment", "SELECT /**/ 1", "SELECT \x02 \x00"},
		{"dashes before comment", "SELECT 1 --/* c */1", "SELECT \x00 --\x02\x00"},
		{"backquoted names", "SELECT `a'b`, `x``1`, `2` FROM `t`", "SELECT `a'b`, `x``1`, `2` FROM `t`"},
		{"names with digits", "SELECT col1, t2.c3, a$1, 1abc, 123e4x FROM t9", ""},
		{"names with digits only", "SELECT col1, t2.c3, a$1 FROM t9 WHERE x = 5", "SELECT col1, t2.c3, a$1 FROM t9 WHERE x = \x00"},
		{"variables", "SELECT @a, @a.b1, @@session.sql_mode, @x := 5, ?", "SELECT @a, @a.b1, @@session.sql_mode, @x := \x00, ?"},
		{"in list", "SELECT * FROM t WHERE id IN (1, 2) LIMIT 10 OFFSET 5", "SELECT * FROM t WHERE id IN (\x00, \x00) LIMIT \x00 OFFSET \x00"},
		{"limit comma", "SELECT * FROM t ORDER BY a LIMIT 5, 10", "SELECT * FROM t ORDER BY a LIMIT \x00, \x00"},
		{"order by decimal", "SELECT * FROM t ORDER BY a + 1.5", "SELECT * FROM t ORDER BY a + \x03"},
		{"order by in subquery", "SELECT * FROM t WHERE a IN (SELECT b FROM u ORDER BY b) AND c = 1", "SELECT * FROM t WHERE a IN (SELECT b FROM u ORDER BY b) AND c = \x00"},
		{"interval", "SELECT * FROM t WHERE d > NOW() - INTERVAL 1 DAY", "SELECT * FROM t WHERE d > NOW() - INTERVAL \x00 DAY"},
		{"wait", "SELECT * FROM t FOR UPDATE WAIT 5", "SELECT * FROM t FOR UPDATE WAIT \x00"},
		{"cast without length", "SELECT CAST(a AS SIGNED), CAST('1' AS DECIMAL)", "SELECT CAST(a AS SIGNED), CAST(\x01 AS DECIMAL)"},
		{"non-ASCII", "SELECT 'é' FROM tè1", "SELECT \x01 FROM tè1"},

		{"double quote", `SELECT "a"`, ""},
		{"double quote in comment", `SELECT 1 /* " */`, ""},
		{"backslash", `SELECT 'a\''`, ""},
		{"backslash outside", `SELECT \N`, ""},
		{"introducer", `SELECT _utf8mb4'a'`, ""},
		{"introducer with space", `SELECT _utf8mb4 'a'`, ""},
		{"national string", `SELECT N'a'`, ""},
		{"hex string", `SELECT X'1F'`, ""},
		{"bit string", `SELECT b'101'`, ""},
		{"hex number", `SELECT 0x1F`, ""},
		{"bit number", `SELECT 0b101`, ""},
		{"name before quote", `SELECT abc'x'`, ""},
		{"quoted variable", `SELECT @'a b'`, ""},
		{"backquoted variable", "SELECT @`a`", ""},
		{"string after at", `SELECT @ 'a'`, ""},
		{"digits name", `SELECT 1abc`, ""},
		{"exponent name", `SELECT 123e4x`, ""},
		{"exponent without digits", `SELECT 1e`, ""},
		{"trailing dot", `SELECT 1.`, ""},
		{"leading dot", `SELECT .5`, ""},
		{"dot number", `SELECT 1.5.2`, ""},
		{"qualified digits", `SELECT t.1 FROM t`, ""},
		{"qualified digits after space", `SELECT t. 1 FROM t`, ""},
		{"number then quote", `SELECT 1'a'`, ""},
		{"long integer", `SELECT 12345678901234567890`, ""},
		{"long decimal", "SELECT 1." + strings.Repeat("1", 30), ""},
		{"long exponent", `SELECT 1e400`, ""},
		{"version comment", `SELECT /*!50000 1 */`, ""},
		{"hint", `SELECT /*+ MAX_EXECUTION_TIME(1) */ 1`, ""},
		{"tidb comment", `SELECT /*T![x] 1 */ 1`, ""},
		{"mariadb comment", `SELECT /*M!100000 1 */ 1`, ""},
		{"mariadb comment in string", `SELECT '/*M!'`, ""},
		{"stray comment end", `SELECT 2 */ 1`, ""},
		{"unterminated comment", `SELECT /* 1`, ""},
		{"unterminated string", `SELECT 'a`, ""},
		{"unterminated name", "SELECT `a", ""},
		{"dashes at end", "SELECT 1 --", ""},
		{"control character", "SELECT 1 --\x0bx", ""},
		{"NUL", "SELECT 1\x00", ""},
		{"placeholder byte", "SELECT \x01", ""},
		{"invalid UTF-8", "SELECT '\xff'", ""},
		{"char length", "SELECT CAST(x AS CHAR(10))", ""},
		{"decimal precision", "SELECT CONVERT(x, DECIMAL /* p */ (10, 2))", ""},
		{"datetime precision", "SELECT CAST(x AS DATETIME(3))", ""},
		{"order by position", "SELECT a, b FROM t ORDER BY 1", ""},
		{"order by list", "SELECT a, b FROM t ORDER BY a, 2 DESC", ""},
		{"group by position", "SELECT a FROM t GROUP BY (1)", ""},
		{"collate", "SELECT a COLLATE 'utf8mb4_bin' FROM t", ""},
		{"convert using", "SELECT CONVERT(a USING 'latin1') FROM t", ""},
		{"charset equals", "SELECT CAST(a AS CHAR CHARSET = 'latin1') FROM t", ""},
		{"escape", "SELECT * FROM t WHERE a LIKE 'x' ESCAPE '!'", ""},
		{"explain", "EXPLAIN FORMAT='json' SELECT 1", ""},
		{"describe after semicolon", "SELECT 1; DESCRIBE SELECT 2", ""},
		{"prepare", "PREPARE p FROM 'SELECT 1'", ""},
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
	if got, ok := Shape(dst, "SELECT 1, 2, X'1F'"); ok || string(got) != "prefix:" {
		t.Errorf("Shape of a refused text = %q, %v; want dst as it was", got, ok)
	}
	if n := testing.AllocsPerRun(100, func() {
		got, _ = Shape(got[:0], "SELECT c FROM sbtest1 WHERE id = 48213 /* x */;")
	}); n != 0 {
		t.Errorf("Shape allocates %v times", n)
	}
}

// Replacement literals for the variants FuzzShape and TestShapeKeyProperty build: each literal of
// the input is replaced by one of these, so that its kind and class stay and its value changes.
var (
	intAlts     = []string{"0", "7", "1", "99999999999", "2147483648", "1234567890123456789", "0123", "9999999999999999999"}
	decimalAlts = []string{"1.5", "0.0", "123456789012345678901234567.25", "00.10"}
	floatAlts   = []string{"2e3", "31E-2", "1.5e+99", "99999999999999999e99", "1e-99"}
	numberAlts  = [3][]string{intAlts, decimalAlts, floatAlts} // by class
	stringAlts  = []string{"''", "'x'", "'it''s'", "'a\nb'", "'é'", "'--'", "'/*'", "';'", "' '", "'#'", "'*/'", "'ab'"}
)

// variant returns sql with its n-th set of replacement literals and comments; ok false when Shape
// refuses sql. With mixed, each number is replaced by one of another class: the result should
// have another key.
func variant(sql string, n int, mixed bool) (string, bool) {
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
		case tokInt, tokDecimal, tokFloat:
			class := int(t.kind - tokInt)
			if mixed {
				class = (class + 1 + n%2) % 3 // another class
			}
			text = pick(numberAlts[class], n+lit, text)
			lit++
		case tokString:
			text = pick(stringAlts, n+lit, text)
			lit++
		case tokComment:
			switch {
			case n%2 == 0:
			case text[0] == '/':
				text = "/* v ' # -- */"
			default:
				text = "# v ' -- /* " // a block comment might make a */ with the * before it
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
// same classification apart from Text (fingerprint included) whenever that classification is one
// a cache keeps by shape.
func checkKeyProperty(t *testing.T, sql string) {
	t.Helper()
	key, ok := Shape(nil, sql)
	if !ok {
		return
	}
	want, werr := Classify(sql)
	for n := 0; n < 8; n++ {
		mixed := n >= 4
		v, ok := variant(sql, n, mixed)
		if !ok {
			t.Fatalf("variant(%q): the lexer refused what Shape accepted", sql)
		}
		vkey, ok := Shape(nil, v)
		if mixed && (!ok || string(vkey) != string(key)) {
			continue // a number of another class: another key, as it should be
		}
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
// MySQL's grammar does not take a literal as a value.
var shapeSeeds = []string{
	"SELECT c FROM sbtest1 WHERE id=48213",
	"SELECT c FROM sbtest1 WHERE id BETWEEN 5 AND 104 ORDER BY c",
	"UPDATE sbtest1 SET k=k+1 WHERE id=48213",
	"UPDATE sbtest1 SET c='0474-8461' WHERE id=5",
	"DELETE FROM sbtest1 WHERE id=48213",
	"INSERT INTO sbtest1 (id, k, c, pad) VALUES (48213, 4, '8461-0474', '3371-0064')",
	"/* controller='users',traceparent='00-4bf92f-01' */ SELECT name FROM users WHERE id = 42",
	"SELECT name FROM users WHERE id = 42 -- retry 1\n",
	"SELECT name FROM users WHERE id = 42 # retry 1",
	"SELECT 'a' 'b' FROM t",
	"SELECT 'a' -- c\n'b' FROM t",
	"SELECT 'a' /* c */'b' FROM t",
	"SELECT 'a' AS 'b' FROM t",
	"SELECT a 'b' FROM t ORDER BY b",
	"SELECT * FROM t WHERE a IN (1, 2, 3) ORDER BY a LIMIT 10 OFFSET 5",
	"SELECT * FROM t ORDER BY a LIMIT 5, 10",
	"SELECT * FROM t ORDER BY 1 LIMIT 1",
	"SELECT a, b FROM t GROUP BY a, 2 HAVING a > 1 ORDER BY a",
	"SELECT a FROM t GROUP BY a WITH ROLLUP",
	"SELECT * FROM t ORDER BY a = 1.5, b",
	"SELECT * FROM t ORDER BY (SELECT 1 FROM u LIMIT 1), 2",
	"SELECT * FROM t WHERE a = (SELECT b FROM u ORDER BY b LIMIT 1) + 2",
	"SELECT * FROM t FOR UPDATE WAIT 5",
	"SELECT * FROM t FOR SHARE NOWAIT",
	"SELECT * FROM t LOCK IN SHARE MODE",
	"SELECT CAST(x AS CHAR(3)), CAST(y AS DECIMAL(10, 2)), CONVERT(z, DATETIME(3)) FROM t",
	"SELECT CAST(x AS SIGNED), CAST(y AS UNSIGNED INTEGER), CAST('1' AS DATE) FROM t",
	"SELECT CAST(x AS FLOAT(24)) FROM t",
	"SELECT CAST(x AS CHAR CHARACTER SET 'utf8mb4') FROM t",
	"SELECT x COLLATE 'utf8mb4_bin', y COLLATE utf8mb4_bin FROM t",
	"SELECT CONVERT(x USING 'latin1') FROM t",
	"SELECT * FROM t WHERE a LIKE 'a%' ESCAPE '!'",
	"SELECT * FROM t WHERE a LIKE 'a%'",
	"SELECT * FROM t WHERE d > NOW() - INTERVAL 1 DAY",
	"SELECT * FROM t WHERE d > '2024-01-01' + INTERVAL '1:2' HOUR_MINUTE",
	"SELECT DATE '2024-01-01', TIMESTAMP '2024-01-01 00:00:00' FROM t",
	"SELECT _utf8mb4 'a', _binary'b', N'c', X'1F', 0x1F, b'1', 0b1",
	"SELECT @a := 1, @b, @@session.sql_mode, @1, @a.1 FROM t WHERE x = ?",
	"SELECT t.1, t. 2 FROM t",
	"SELECT 1abc, 123e4x, 1e5, 1.5e3 FROM t",
	"SELECT 1 x, 2 AS y, 'z' w, 1.5 v, 2e3 u",
	"SELECT * FROM t WHERE a = -1 AND b = +2 AND c = 1-1 AND d = 1--1\n",
	"SELECT 1 --/* c */1",
	"SELECT * FROM t USE INDEX (i) WHERE a = 1",
	"SELECT * FROM t AS OF TIMESTAMP '2024-01-01 00:00:00' WHERE a = 1",
	"SELECT * FROM t PARTITION (p0) WHERE a = 1",
	"SELECT * FROM t WHERE MATCH (a) AGAINST ('x' IN BOOLEAN MODE)",
	"SELECT a FROM t WINDOW w AS (ORDER BY a ROWS BETWEEN 1 PRECEDING AND 2 FOLLOWING)",
	"SELECT a FROM t WINDOW w AS (ORDER BY a RANGE INTERVAL 1 DAY PRECEDING)",
	"WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
	"INSERT INTO t VALUES (1, 'a') ON DUPLICATE KEY UPDATE v = 'b'",
	"INSERT INTO t SET a = 1, b = 'x'",
	"INSERT INTO t (a) SELECT b FROM u WHERE c = 1 LIMIT 5",
	"REPLACE INTO t VALUES (1, 'a')",
	"UPDATE t SET a = 1 ORDER BY b LIMIT 5",
	"DELETE FROM t WHERE a = 1 ORDER BY b DESC LIMIT 1",
	"DELETE t FROM t JOIN u ON t.id = u.id WHERE u.x = 'y'",
	"SELECT a FROM t UNION SELECT 2 ORDER BY 1",
	"SELECT 1; SELECT 2",
	"SELECT 1 INTO @v",
	"SELECT * FROM t INTO OUTFILE '/tmp/x' FIELDS TERMINATED BY ','",
	"TABLE t ORDER BY a LIMIT 3",
	"VALUES ROW(1, 'a'), ROW(2, 'b')",
	"DO 1 + 2",
	"SET @a = 1",
	"SET NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'",
	"EXPLAIN FORMAT = 'json' SELECT * FROM t WHERE a = 1",
	"PREPARE p FROM 'SELECT * FROM t WHERE a = 1'",
	"EXECUTE p USING @a",
	"SELECT 1 AS `x``y`, `a'b` FROM `t`",
	"SELECT * FROM `order` WHERE `by` = 1 ORDER BY `by`, 2",
	"SELECT a ->> '$.b', a -> '$.c' FROM t",
	"SELECT * FROM t WHERE (a, b) IN ((1, 'x'), (2, 'y'))",
	"SELECT * FROM t WHERE a IN (1) AND b NOT IN ('x', 'y')",
	"SELECT CASE WHEN a = 1 THEN 'x' ELSE 'y' END FROM t",
	"SELECT * FROM t WHERE a IS NULL AND b <=> 1 AND c != 2 AND d <> 'x'",
	"SELECT * FROM t LIMIT 18446744073709551615",
	"SELECT * FROM t TABLESAMPLE REGIONS()",
	"SELECT * FROM t TABLESAMPLE SYSTEM (10 PERCENT) WHERE a = 1",
	"SELECT * FROM t FOR UPDATE WAIT 1",
	"SELECT * FROM t WHERE b = 'x' COLLATE utf8mb4_bin",
	"INSERT INTO t VALUES ('a') AS n ON DUPLICATE KEY UPDATE a = n.a",
	"INSERT IGNORE INTO t PARTITION (p0) VALUES (1), (2)",
	"SELECT * FROM t WHERE a REGEXP '[' AND b = 0.0000000000000000000000000001",
	"SELECT a FROM t WINDOW w AS (ORDER BY a ROWS 1 PRECEDING)",
	"SELECT * FROM t WHERE a IN (1) OR a IN ('x')",
	"SELECT 1 FROM t WHERE a = 1 LIMIT 1 INTO @x",
	"SELECT * FROM t LIMIT 9999999999999999999",
	"TABLE t LIMIT 1",
	"VALUES ROW(1), ROW(2.5)",
	"DO 1.5",
	"SELECT SQL_BUFFER_RESULT a FROM t1 STRAIGHT_JOIN t2 ON t1.a = t2.a WHERE t2.b = 1",
	"SELECT * FROM t WHERE (a, b) > (1, 2) ORDER BY a DESC, b ASC LIMIT 10",
	"SELECT * FROM t1 WHERE EXISTS (SELECT 1 FROM t2 ORDER BY 1) AND a = 2",
	"SELECT * FROM t WHERE a = 1 GROUP BY a HAVING a > 2 ORDER BY a LIMIT 3",
	"SELECT a FROM t UNION ALL SELECT b FROM u LIMIT 1",
	"SELECT * FROM t LIMIT ?, 10",
	"SELECT * FROM t WHERE a = 1e5 OR a = 1.5e-3 OR a = 2.",
	"SELECT * FROM t WHERE a = '\u00e9' AND b = 'a\tb'",
	"SELECT * FROM t AS x WHERE x.a = 1 AND x.`b` = 'c'",
	"SELECT 1 FROM t WHERE a MEMBER OF ('[1]') AND b = 1",
	"UPDATE LOW_PRIORITY IGNORE t SET a = 1 WHERE b = 'x' ORDER BY c LIMIT 10",
	"DELETE QUICK FROM t WHERE a = 1 LIMIT 1",
	"DELETE t, u FROM t JOIN u ON t.a = u.a WHERE t.b = 1",
	"SELECT * FROM t1, (SELECT a FROM t2 WHERE b = 1) AS d WHERE d.a = t1.a",
	"WITH c AS (SELECT a FROM t WHERE b = 2) UPDATE u JOIN c ON u.a = c.a SET u.b = 3",
}

func TestShapeKeyProperty(t *testing.T) {
	for _, sql := range shapeSeeds {
		checkKeyProperty(t, sql)
	}
}

// Fragments and templates for TestShapeKeyPropertyGenerated: keywords, type names, literals and
// punctuation from the corners of MySQL's grammar, put together at random. Byte-level fuzzing
// rarely writes a keyword; this finds places where the grammar does not treat a literal as a value.
var (
	shapeFragments = []string{
		"SELECT", "FROM", "WHERE", "t", "u.a", "a", "b", "(", ")", ",", "=", "+", "-", "*", "/", "%", "DIV",
		"MOD", "1", "2.5", "3e2", "'x'", "'y'", "AS", "ORDER BY", "GROUP BY", "LIMIT", "OFFSET", "HAVING",
		"IN", "AND", "OR", "NOT", "XOR", "VALUES", "ROW", "CAST", "CONVERT", "USING", "CHAR", "VARCHAR",
		"BINARY", "DECIMAL", "SIGNED", "UNSIGNED", "DATETIME", "TIME", "DATE", "TIMESTAMP", "YEAR", "FLOAT",
		"DOUBLE", "JSON", "INTERVAL", "DAY", "HOUR_MINUTE", "SECOND", "MICROSECOND", "CASE", "WHEN", "THEN",
		"ELSE", "END", "IS", "NULL", "TRUE", "LIKE", "ESCAPE", "REGEXP", "BETWEEN", "DISTINCT", "ON", "JOIN",
		"LEFT JOIN", "STRAIGHT_JOIN", "NATURAL", "DUAL", "FOR UPDATE", "FOR SHARE", "WAIT", "NOWAIT",
		"SKIP LOCKED", "LOCK IN SHARE MODE", "WINDOW", "w", "OVER", "PARTITION BY", "ROWS", "RANGE",
		"PRECEDING", "FOLLOWING", "CURRENT ROW", "UNBOUNDED", "COLLATE", "utf8mb4_bin", "'utf8mb4_bin'",
		"CHARACTER SET", "CHARSET", "latin1", "'latin1'", "ANY", "ALL", "EXISTS", "UNION", "EXCEPT",
		"INTERSECT", "DEFAULT", "WITH ROLLUP", "SQL_CALC_FOUND_ROWS", "HIGH_PRIORITY", "SQL_NO_CACHE",
		"USE INDEX", "FORCE INDEX", "IGNORE INDEX", "PARTITION", "p0", "AS OF TIMESTAMP", "MATCH",
		"AGAINST", "IN BOOLEAN MODE", "BINARY", "_utf8mb4", "_binary", "N", "X", "@a", "@@sql_mode", ":=",
		"?", "->", "->>", "'$.a'", "<=>", "!=", "<>", "<", ">", "||", "&&", "!", "~", "^", "<<", ">>", "&", "|",
		";", "TABLE", "DESC", "ASC", "INTO", "@v", "OUTFILE", "'/tmp/f'", "ON DUPLICATE KEY UPDATE",
		"SET", "0", "10", "99999999999", "'1 day'", "'2024-01-01'", "`order`", "`by`", "`t`", ".", "EXPLAIN",
		"DO", "-- c\n", "# c\n", "/* c */", "\n", "MEMBER OF", "TO", "TSO", "LOW_PRIORITY", "IGNORE",
		"QUICK", "REPLACE", "DELAYED", "ROW_FORMAT", "TABLESAMPLE", "SYSTEM", "PERCENT", "REGIONS",
	}
	shapeTemplates = []string{
		"SELECT @ FROM t", "SELECT a @ FROM t", "SELECT a FROM t WHERE a = @", "SELECT a FROM t WHERE a @ 1",
		"SELECT a FROM t @", "SELECT CAST(a AS @) FROM t", "SELECT CONVERT(a, @) FROM t", "SELECT @ 'x'",
		"SELECT @ 1", "SELECT a FROM t ORDER BY @", "SELECT a FROM t GROUP BY @", "SELECT a FROM t LIMIT @",
		"SELECT a FROM t ORDER BY a @", "INSERT INTO t VALUES (@)", "INSERT INTO t (a) @ VALUES (1)",
		"INSERT INTO t VALUES (1) @", "UPDATE t SET a = @ WHERE b = 2", "UPDATE t SET a = 1 @",
		"DELETE FROM t WHERE @ = 3", "DELETE FROM t @", "@ SELECT 1", "SELECT a FROM t @ 1 @",
		"SELECT 1 FROM t WHERE a IN (@)", "WITH x AS (SELECT 1) SELECT @ FROM x", "SELECT 'a' @ 'b'",
		"SELECT a FROM t WHERE a LIKE 'x' @", "SELECT a FROM t WINDOW w AS (@)",
		"SELECT a FROM t FOR UPDATE @", "SELECT a FROM t @ LIMIT 1",
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
	const q = "SELECT c FROM sbtest1 WHERE id=48213"
	b.ReportAllocs()
	b.SetBytes(int64(len(q)))
	var dst []byte
	for b.Loop() {
		dst, _ = Shape(dst[:0], q)
	}
}
