package postgres

import (
	"unicode/utf8"

	"github.com/gatehousedb/gatehouse/internal/policy"
)

// Bytes a shape key puts in place of what it leaves out. None of them may appear in a text that
// Shape accepts, so a key cannot be confused with the text of another statement.
const (
	shapeNumber  = 0x00 // a numeric literal
	shapeString  = 0x01 // a plain string literal
	shapeComment = 0x02 // a /* */ comment (-- comments become a space)
)

// Shape appends to dst a key for sql in which every numeric literal, every plain string literal
// and every comment is replaced by a placeholder byte, and everything else is copied as it is. Texts
// that differ only in the values of such literals and in the contents of comments (pgbench -M
// simple, ORMs that inline values, sqlcommenter trace comments) get the same key; policy.Cache uses
// it as Cache.Shape.
//
// It returns ok false, and the caller classifies sql by its own text, whenever it is not certain
// that texts with the same key are classified the same (apart from Statement.Text): dollar-quoted,
// escape (E'...'), bit, hex, national and Unicode (U&'...') strings, any backslash in a string, numeric
// forms other than plain decimal ones (0x1F, 1_000, .5, 1.), a number directly followed by a letter
// or '.', unterminated strings, identifiers and comments, NUL and the placeholder bytes, invalid
// UTF-8, texts longer than policy.DefaultMaxText, and the places where PostgreSQL's grammar takes a
// number as part of the statement's structure rather than as a value: type modifiers such as
// varchar(10), float(24) and timestamp(3), current_timestamp(3), array bounds int[3] (and so any
// "[n]"), and FETCH, MOVE and EXPLAIN statements (a count, or options).
//
// A block comment is kept apart from a space because it ends a string continuation: 'a'<newline>'b'
// is one literal, 'a' /* */<newline>'b' two. A -- comment is whitespace even there.
func Shape(dst []byte, sql string) ([]byte, bool) {
	if len(sql) > policy.DefaultMaxText {
		return dst, false
	}
	for i := 0; i < len(sql); i++ {
		if sql[i] <= shapeComment {
			return dst, false
		}
	}
	if !utf8.ValidString(sql) {
		return dst, false // Classify fails on invalid UTF-8 in a literal but not in a comment
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
		case tokNumber:
			b = shapeNumber
		case tokString:
			b = shapeString
		case tokLineComment:
			b = ' '
		case tokBlockComment:
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
	tokSpace        tokKind = iota // a run of whitespace
	tokWord                        // an unquoted identifier or keyword
	tokQuoted                      // a "quoted identifier"
	tokParam                       // $1
	tokNumber                      // 42, 1.5, 1e-3
	tokString                      // 'text'
	tokLineComment                 // -- to the end of the line, without the newline
	tokBlockComment                // /* ... */, nested
	tokPunct                       // any other byte
)

type token struct {
	kind       tokKind
	start, end int // sql[start:end]
}

// lexer splits a text into the tokens Shape needs to tell apart, following PostgreSQL's scanner
// (src/backend/parser/scan.l) where it matters: it only has to find literals and comments exactly,
// and to refuse (bad) what it cannot be sure of. It does not allocate.
type lexer struct {
	sql string
	pos int
	bad bool

	// The last two significant tokens (not space or comment), and the state the refusals need.
	prev, prev2  token
	stmtStart    bool // no significant token yet in this statement
	numInBracket bool // the last significant token is a number right after '['
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
	if t.kind == tokSpace || t.kind == tokLineComment || t.kind == tokBlockComment {
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
	if l.numInBracket && t.kind == tokPunct && sql[t.start] == ']' {
		return false // int[3]: an array bound, not a value
	}
	l.numInBracket = false
	if l.stmtStart {
		l.stmtStart = false
		if t.kind == tokWord {
			switch {
			case wordIs(sql[t.start:t.end], "fetch"), wordIs(sql[t.start:t.end], "move"),
				wordIs(sql[t.start:t.end], "explain"):
				return false // FETCH 5: a count; EXPLAIN (FORMAT 'json'): options
			}
		}
	}
	if t.kind == tokPunct && sql[t.start] == ';' {
		l.stmtStart = true
	}
	if t.kind != tokNumber || l.prev.kind != tokPunct {
		return true
	}
	switch sql[l.prev.start] {
	case '[':
		l.numInBracket = true
	case '(':
		if l.prev2.kind == tokWord && typmodWord(sql[l.prev2.start:l.prev2.end]) {
			return false
		}
	}
	return true
}

// typmodWord reports whether w is a keyword that PostgreSQL's grammar follows with '(' Iconst ')'
// (a precision or length that is part of the type, checked or mapped by the grammar itself:
// float(24) is real, float(25) double precision, float(1.5) a syntax error), or one of the other
// type names that take modifiers.
func typmodWord(w string) bool {
	for _, k := range [...]string{"float", "char", "character", "varchar", "nchar", "varying", "bit",
		"numeric", "decimal", "dec", "time", "timestamp", "interval", "second", "current_time",
		"current_timestamp", "localtime", "localtimestamp"} {
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
	case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
		j := i + 2
		for j < len(sql) && sql[j] != '\n' && sql[j] != '\r' {
			j++
		}
		t.kind, t.end = tokLineComment, j
	case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
		depth, j := 1, i+2
		for depth > 0 {
			if j+1 >= len(sql) {
				return t, false // unterminated
			}
			switch {
			case sql[j] == '*' && sql[j+1] == '/':
				depth--
				j += 2
			case sql[j] == '/' && sql[j+1] == '*':
				depth++
				j += 2
			default:
				j++
			}
		}
		t.kind, t.end = tokBlockComment, j
	case c == '\'':
		if i > 0 && (isIdent(sql[i-1]) || sql[i-1] == '&') {
			return t, false // E'...', B'...', X'...', N'...', U&'...'
		}
		j := i + 1
		for {
			if j >= len(sql) {
				return t, false // unterminated
			}
			if sql[j] == '\\' {
				return t, false // an escape when standard_conforming_strings is off
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
	case c == '"':
		if i > 0 && sql[i-1] == '&' {
			return t, false // U&"..." may be followed by UESCAPE 'c', which changes the name
		}
		j := i + 1
		for {
			if j >= len(sql) {
				return t, false // unterminated
			}
			if sql[j] == '"' {
				if j+1 < len(sql) && sql[j+1] == '"' {
					j += 2
					continue
				}
				break
			}
			j++
		}
		t.kind, t.end = tokQuoted, j+1
	case c == '$':
		j := i + 1
		if j >= len(sql) || !isDigit(sql[j]) {
			return t, false // a dollar-quoted string, or a stray '$'
		}
		for j < len(sql) && isDigit(sql[j]) {
			j++
		}
		t.kind, t.end = tokParam, j
	case isDigit(c):
		if i > 0 && (isIdent(sql[i-1]) || sql[i-1] == '.') {
			return t, false // .5, or digits the lexer should have read as part of a name
		}
		j := digits(sql, i)
		if j+1 < len(sql) && sql[j] == '.' && isDigit(sql[j+1]) {
			j = digits(sql, j+1)
		}
		if j < len(sql) && (sql[j] == 'e' || sql[j] == 'E') {
			k := j + 1
			if k < len(sql) && (sql[k] == '+' || sql[k] == '-') {
				k++
			}
			if k < len(sql) && isDigit(sql[k]) {
				j = digits(sql, k)
			}
		}
		if j < len(sql) && (isIdent(sql[j]) || sql[j] == '.') {
			return t, false // 0x1F, 1_000, 1e, 12abc, 1., 1.5.2
		}
		t.kind, t.end = tokNumber, j
	case isIdent(c): // not a digit: ident_start
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

func digits(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// Byte classes from scan.l.
const (
	classSpace = 1 << iota // space: [ \t\n\r\f\v]
	classIdent             // ident_cont: [A-Za-z\200-\377_0-9\$]
	classDigit             // [0-9]
)

var classes = func() (t [256]uint8) {
	for _, c := range []byte(" \t\n\r\f\v") {
		t[c] = classSpace
	}
	for c := 0; c < 256; c++ {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80 || c == '_' || c == '$' {
			t[c] = classIdent
		}
		if '0' <= c && c <= '9' {
			t[c] = classIdent | classDigit
		}
	}
	return t
}()

func isDigit(c byte) bool { return classes[c]&classDigit != 0 }
func isSpace(c byte) bool { return classes[c]&classSpace != 0 }
func isIdent(c byte) bool { return classes[c]&classIdent != 0 }
