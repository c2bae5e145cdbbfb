package mysql

import (
	"strings"
	"unicode/utf8"

	"github.com/gatehousedb/gatehouse/internal/policy"
)

// Bytes a shape key puts in place of what it leaves out. None of them may appear in a text that
// Shape accepts, so a key cannot be confused with the text of another statement. Numbers keep
// their class because the grammar tells them apart: LIMIT 1 and FOR UPDATE WAIT 1 take an integer
// (LIMIT 1.5 is a syntax error), and an integer too big for 64 bits becomes a decimal.
const (
	shapeInt     = 0x00 // an integer literal of at most 19 digits (it fits in a uint64)
	shapeString  = 0x01 // a plain string literal
	shapeComment = 0x02 // a comment: /* */, # or "-- "
	shapeDecimal = 0x03 // a decimal literal, 1.5, of at most 30 digits
	shapeFloat   = 0x04 // a float literal, 1.5e-3, of at most 17 digits and a 2-digit exponent
)

// Limits on the literals Shape replaces: within them the lexer reads every value of a class as
// the same kind of token, without overflow (an integer of 20 digits may or may not fit in a
// uint64; a float's exponent may overflow).
const (
	maxIntDigits     = 19
	maxDecimalDigits = 30
	maxFloatDigits   = 17
	maxExpDigits     = 2
)

// Shape appends to dst a key for sql in which every numeric literal is replaced by a byte for its
// class (integer, decimal, float), every plain string literal by another and every comment by a
// third, and everything else is copied as it is. Texts that differ only in the values of such
// literals and in comments (ORMs that inline values, sqlcommenter trace comments) get the same
// key; policy.Cache uses it as Cache.Shape.
//
// It returns ok false, and the caller classifies sql by its own text, whenever it is not certain
// that texts with the same key are classified the same (apart from Statement.Text), with the same
// fingerprint. MySQL's lexer depends on the session's sql_mode, which the gateway does not know, so
// Shape refuses any double quote (a string, or a name under ANSI_QUOTES) and any backslash (an
// escape, unless NO_BACKSLASH_ESCAPES). It also refuses charset introducers and prefixed literals
// (_utf8mb4'a', N'a', X'1F', B'1', 0x1F, 0b1, any quote right after a name character or '@'),
// numbers that touch a name (MySQL names may start with digits: 1e5x, t.1), .5, 1., numbers
// outside the limits above, executable comments and hints (/*! */, /*+ */, /*T! */, /*M! */) and
// a stray */, "--" at the end of the text, unterminated strings, names and comments, control
// characters, the placeholder bytes, invalid UTF-8 and texts longer than policy.DefaultMaxText;
// and the places where the grammar takes a literal as structure rather than as a value: type
// lengths such as CHAR(3) and DECIMAL(10,2) in CAST and CONVERT, collation and character set
// names (COLLATE 'utf8mb4_bin', USING 'latin1'), ESCAPE 'c' (one character or a syntax error),
// integers in ORDER BY and GROUP BY (column positions, which the fingerprint keeps), and
// statements that begin with EXPLAIN, DESCRIBE or PREPARE.
//
// Comments become one byte, apart from spaces: where two dashes are followed by a comment rather
// than a space they are not a comment themselves. Adjacent strings ('a' 'b') are one literal in
// MySQL whether comments or spaces separate them, and their key keeps one byte for each.
func Shape(dst []byte, sql string) ([]byte, bool) {
	if len(sql) > policy.DefaultMaxText {
		return dst, false
	}
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		if c < ' ' && c != '\t' && c != '\n' && c != '\r' || c == 0x7f || c == '"' || c == '\\' {
			return dst, false
		}
	}
	if !utf8.ValidString(sql) || strings.Contains(sql, "/*M!") { // Classify rejects /*M! anywhere
		return dst, false
	}
	l := lexer{sql: sql}
	n := len(dst)
	from := 0 // sql[from:] is not in dst yet
	for {
		t, ok := l.next()
		if !ok {
			if l.bad {
				return dst[:n], false
			}
			return append(dst, sql[from:]...), true
		}
		var b byte
		switch t.kind {
		case tokInt:
			b = shapeInt
		case tokDecimal:
			b = shapeDecimal
		case tokFloat:
			b = shapeFloat
		case tokString:
			b = shapeString
		case tokComment:
			b = shapeComment
		default:
			continue
		}
		dst = append(append(dst, sql[from:t.start]...), b)
		from = t.end
	}
}

type tokKind uint8

const (
	tokSpace   tokKind = iota // a run of whitespace
	tokWord                   // an unquoted name or keyword
	tokQuoted                 // a `quoted name`
	tokVar                    // @var, @@system.var
	tokInt                    // 42
	tokDecimal                // 1.5
	tokFloat                  // 1e-3
	tokString                 // 'text'
	tokComment                // /* ... */, # ... or -- ... (without the newline)
	tokPunct                  // any other byte
)

type token struct {
	kind       tokKind
	start, end int // sql[start:end]
}

// lexer splits a text into the tokens Shape needs to tell apart, following MySQL's lexer and the
// TiDB parser's (pkg/parser/lexer.go) where it matters: it only has to find literals and comments
// exactly, and to refuse (bad) what it cannot be sure of. It does not allocate.
type lexer struct {
	sql string
	pos int
	bad bool

	// The last two significant tokens (not space or comment), and the state the refusals need.
	prev, prev2 token
	stmtStart   bool // no significant token yet in this statement
	depth       int  // parentheses open
	// orderBy is 1 + the depth of the ORDER BY or GROUP BY clause being read, 0 outside one.
	orderBy int
}

// next returns the next token; ok is false at the end of the text or when the lexer refuses it
// (l.bad is then set).
func (l *lexer) next() (t token, ok bool) {
	if l.bad || l.pos >= len(l.sql) {
		return token{}, false
	}
	if l.pos == 0 {
		l.stmtStart = true
	}
	t, ok = l.scan()
	if !ok {
		l.bad = true
		return token{}, false
	}
	if t.kind == tokSpace || t.kind == tokComment {
		return t, true
	}
	if !l.check(t) {
		l.bad = true
		return token{}, false
	}
	l.prev2, l.prev = l.prev, t
	return t, true
}

// check applies the refusals that depend on the tokens around a significant token t.
func (l *lexer) check(t token) bool {
	sql := l.sql
	text := sql[t.start:t.end]
	if l.stmtStart {
		l.stmtStart = false
		if t.kind == tokWord && (wordIs(text, "explain") || wordIs(text, "describe") ||
			wordIs(text, "desc") || wordIs(text, "prepare")) {
			return false // EXPLAIN FORMAT = 'json' ...: options; PREPARE p FROM '...': a statement
		}
	}
	switch t.kind {
	case tokPunct:
		switch sql[t.start] {
		case ';':
			l.stmtStart = true
			l.depth, l.orderBy = 0, 0
		case '(':
			l.depth++
		case ')':
			l.depth--
			if l.orderBy > l.depth+1 {
				l.orderBy = 0
			}
		}
	case tokWord, tokQuoted:
		name := text
		if t.kind == tokQuoted {
			name = text[1 : len(text)-1] // the digester compares `by` as by
		}
		switch {
		case wordIs(name, "by"):
			if l.orderBy == 0 && (l.prevIs("order") || l.prevIs("group")) {
				l.orderBy = l.depth + 1
			}
		case l.orderBy == l.depth+1 && t.kind == tokWord && clauseEnd(name):
			l.orderBy = 0
		}
	case tokInt, tokDecimal, tokFloat:
		if l.prev.kind == tokPunct && sql[l.prev.start] == '.' {
			return false // t.1: after a name and a dot, digits are a name
		}
		if t.kind == tokInt && l.orderBy != 0 {
			return false // ORDER BY 1: a column position, kept in the fingerprint
		}
		if l.prev.kind == tokPunct && sql[l.prev.start] == '(' && l.prev2.kind == tokWord &&
			typeWord(sql[l.prev2.start:l.prev2.end]) {
			return false // CAST(x AS CHAR(3)): a length, checked by the grammar
		}
	case tokString:
		switch {
		case l.prev.kind == tokVar, l.prev.kind == tokPunct && sql[l.prev.start] == '.':
			return false // @ 'name'
		case l.prev.kind == tokWord && (sql[l.prev.start] == '_' || nameWord(sql[l.prev.start:l.prev.end])):
			return false // _utf8mb4 'a': an introducer; COLLATE 'x', ESCAPE 'x': checked by the grammar
		case l.prev.kind == tokPunct && sql[l.prev.start] == '=' && l.prev2.kind == tokWord &&
			nameWord(sql[l.prev2.start:l.prev2.end]):
			return false // CHARSET = 'x'
		}
	}
	return true
}

// prevIs reports whether the last significant token is the keyword k, plain or quoted.
func (l *lexer) prevIs(k string) bool {
	p := l.prev
	switch p.kind {
	case tokWord:
		return wordIs(l.sql[p.start:p.end], k)
	case tokQuoted:
		return wordIs(l.sql[p.start+1:p.end-1], k)
	}
	return false
}

// clauseEnd reports whether w is a reserved word that ends an ORDER BY or GROUP BY list.
func clauseEnd(w string) bool {
	for _, k := range [...]string{"limit", "having", "for", "lock", "into", "union", "except", "intersect"} {
		if wordIs(w, k) {
			return true
		}
	}
	return false
}

// typeWord reports whether w is a type name that the grammar may follow with '(' and a length or
// precision (in CAST, CONVERT and column definitions), or a function that takes a precision.
func typeWord(w string) bool {
	for _, k := range [...]string{"char", "character", "varchar", "varcharacter", "nchar", "nvarchar",
		"binary", "varbinary", "decimal", "dec", "numeric", "fixed", "float", "double", "real", "datetime",
		"time", "timestamp", "year", "bit", "int", "integer", "tinyint", "smallint", "mediumint", "bigint",
		"signed", "unsigned", "vector", "current_timestamp", "current_time", "localtime", "localtimestamp",
		"utc_time", "utc_timestamp", "now", "sysdate"} {
		if wordIs(w, k) {
			return true
		}
	}
	return false
}

// nameWord reports whether w is a keyword that the grammar may follow with a character set or
// collation name written as a string (checked when parsed), or with an ESCAPE character.
func nameWord(w string) bool {
	for _, k := range [...]string{"collate", "charset", "set", "using", "names", "escape"} {
		if wordIs(w, k) {
			return true
		}
	}
	return false
}

// wordIs reports whether w equals the lower-case keyword k, ASCII case-insensitively.
func wordIs(w, k string) bool {
	if len(w) != len(k) {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != k[i] {
			return false
		}
	}
	return true
}

// scan reads one token at l.pos; ok false refuses the text.
func (l *lexer) scan() (token, bool) {
	sql, i := l.sql, l.pos
	c := sql[i]
	t := token{start: i}
	switch {
	case isSpace(c):
		j := i + 1
		for j < len(sql) && isSpace(sql[j]) {
			j++
		}
		t.kind, t.end = tokSpace, j
	case c == '#':
		t.kind, t.end = tokComment, lineEnd(sql, i+1)
	case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
		if i+2 == len(sql) {
			return t, false // a comment for the TiDB grammar, perhaps not for the server
		}
		if !isSpace(sql[i+2]) {
			t.kind, t.end = tokPunct, i+1 // 1--1 is 1 - -1
			break
		}
		t.kind, t.end = tokComment, lineEnd(sql, i+2)
	case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
		if i+2 < len(sql) && (sql[i+2] == '!' || sql[i+2] == '+' ||
			(sql[i+2] == 'T' || sql[i+2] == 'M') && i+3 < len(sql) && sql[i+3] == '!') {
			return t, false // code: /*! */ and /*T! */ are executed, /*+ */ are optimizer hints
		}
		k := strings.Index(sql[i+2:], "*/")
		if k < 0 {
			return t, false // unterminated
		}
		t.kind, t.end = tokComment, i+2+k+2
	case c == '*' && i+1 < len(sql) && sql[i+1] == '/':
		return t, false // the end of an executable comment, for the server
	case c == '\'':
		if i > 0 && (isIdent(sql[i-1]) || sql[i-1] == '@' || sql[i-1] == '`' || sql[i-1] == '\'') {
			return t, false // N'a', X'1F', B'1', _utf8mb4'a', @'var', `a`'b'
		}
		j := i + 1
		for {
			if j >= len(sql) {
				return t, false // unterminated
			}
			if sql[j] == '\'' {
				if j+1 < len(sql) && sql[j+1] == '\'' {
					j += 2
					continue
				}
				break
			}
			j++
		}
		t.kind, t.end = tokString, j+1
	case c == '`':
		j := i + 1
		for {
			if j >= len(sql) {
				return t, false // unterminated
			}
			if sql[j] == '`' {
				if j+1 < len(sql) && sql[j+1] == '`' {
					j += 2
					continue
				}
				break
			}
			j++
		}
		t.kind, t.end = tokQuoted, j+1
	case c == '@':
		j := i + 1
		if j < len(sql) && sql[j] == '@' {
			j++
		}
		if j < len(sql) && (sql[j] == '\'' || sql[j] == '`') {
			return t, false // @'name', @`name`
		}
		for j < len(sql) && isVar(sql[j]) {
			j++
		}
		t.kind, t.end = tokVar, j
	case isDigit(c):
		if i > 0 && (isIdent(sql[i-1]) || sql[i-1] == '.' || sql[i-1] == '`' || sql[i-1] == '\'') {
			return t, false // .5, or digits the lexer should have read as part of a name
		}
		j := digits(sql, i)
		t.kind = tokInt
		nd := j - i // digits in the mantissa
		if j+1 < len(sql) && sql[j] == '.' && isDigit(sql[j+1]) {
			k := digits(sql, j+1)
			nd += k - j - 1
			j = k
			t.kind = tokDecimal
		}
		if j < len(sql) && (sql[j] == 'e' || sql[j] == 'E') {
			k := j + 1
			if k < len(sql) && (sql[k] == '+' || sql[k] == '-') {
				k++
			}
			if k < len(sql) && isDigit(sql[k]) {
				e := digits(sql, k)
				if e-k > maxExpDigits || nd > maxFloatDigits {
					return t, false
				}
				j = e
				t.kind = tokFloat
			}
		}
		if j < len(sql) && (isIdent(sql[j]) || sql[j] == '.' || sql[j] == '\'' || sql[j] == '`' || sql[j] == '@') {
			return t, false // 0x1F, 0b1, 1e, 12abc, 1., 1.5.2, 1'a'
		}
		if t.kind == tokInt && nd > maxIntDigits || t.kind == tokDecimal && nd > maxDecimalDigits {
			return t, false
		}
		t.end = j
	case isIdent(c): // not a digit
		j := i + 1
		for j < len(sql) && isIdent(sql[j]) {
			j++
		}
		t.kind, t.end = tokWord, j
	default:
		t.kind, t.end = tokPunct, i+1
	}
	l.pos = t.end
	return t, true
}

// lineEnd returns the end of a line comment that goes on from i: the next newline, which is not
// part of it, or the end of the text.
func lineEnd(s string, i int) int {
	if k := strings.IndexByte(s[i:], '\n'); k >= 0 {
		return i + k
	}
	return len(s)
}

func digits(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// Byte classes.
const (
	classSpace = 1 << iota // the whitespace Shape accepts: [ \t\n\r]
	classIdent             // a name character: [A-Za-z0-9_$\200-\377]
	classDigit             // [0-9]
	classVar               // a user variable's name character: a name character or '.'
)

var classes = func() (t [256]uint8) {
	for _, c := range []byte(" \t\n\r") {
		t[c] = classSpace
	}
	for c := 0; c < 256; c++ {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80 || c == '_' || c == '$' {
			t[c] = classIdent | classVar
		}
		if '0' <= c && c <= '9' {
			t[c] = classIdent | classDigit | classVar
		}
	}
	t['.'] = classVar
	return t
}()

func isDigit(c byte) bool { return classes[c]&classDigit != 0 }
func isSpace(c byte) bool { return classes[c]&classSpace != 0 }
func isIdent(c byte) bool { return classes[c]&classIdent != 0 }
func isVar(c byte) bool   { return classes[c]&classVar != 0 }
