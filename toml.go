package main

// A parser for the part of TOML 1.0 that a pgo.toml needs. Anything that is
// valid TOML but outside that part (dates, times, floats, dotted keys) is
// refused as unsupported rather than half understood; anything that is not
// valid TOML is an error. Errors carry the line and column, counted from 1,
// columns in characters. They never quote a value, since values may be secrets.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

type tomlKind int

const (
	tomlKindString tomlKind = iota
	tomlKindInteger
	tomlKindBool
	tomlKindArray
	tomlKindTable
)

func (k tomlKind) String() string {
	switch k {
	case tomlKindString:
		return "a string"
	case tomlKindInteger:
		return "an integer"
	case tomlKindBool:
		return "a boolean"
	case tomlKindArray:
		return "an array"
	case tomlKindTable:
		return "a table"
	}
	return "unknown"
}

// tomlValue is one parsed value with the position it starts at.
type tomlValue struct {
	Kind  tomlKind
	Str   string
	Int   int64
	Bool  bool
	Array []*tomlValue
	Table *tomlTable
	Line  int
	Col   int

	tableArray bool // an array of tables made by [[headers]]; only those may grow
}

// tomlTable is a table with its keys in the order they were defined.
type tomlTable struct {
	Keys   []string
	Values map[string]*tomlValue

	defined bool // by a [header], as an inline table, or the root; not just implied by [a.b]
	inline  bool // an inline table is complete: no header may add to it
}

func newTOMLTable() *tomlTable { return &tomlTable{Values: map[string]*tomlValue{}} }

func (t *tomlTable) set(key string, v *tomlValue) {
	t.Keys = append(t.Keys, key)
	t.Values[key] = v
}

// tomlError is a syntax error, or valid TOML that this parser does not support.
type tomlError struct {
	Line, Col   int
	Msg         string
	Unsupported bool
}

func (e *tomlError) Error() string {
	kind := "invalid TOML"
	if e.Unsupported {
		kind = "unsupported TOML"
	}
	return fmt.Sprintf("%s: %s at line %d, column %d", kind, e.Msg, e.Line, e.Col)
}

// maxTOMLDepth bounds the nesting of arrays and inline tables, so hostile input cannot exhaust the stack.
const maxTOMLDepth = 64

type tomlParser struct {
	src       []byte
	pos       int
	line, col int
	depth     int
	root      *tomlTable
	cur       *tomlTable // the table the following key/values go into
}

// parseTOML parses a whole document and returns its root table.
func parseTOML(data []byte) (*tomlTable, error) {
	p := &tomlParser{src: data, line: 1, col: 1, root: newTOMLTable()}
	if err := p.checkUTF8(); err != nil {
		return nil, err
	}
	p.root.defined = true
	p.cur = p.root
	for !p.eof() {
		if err := p.expression(); err != nil {
			return nil, err
		}
	}
	return p.root, nil
}

// checkUTF8 finds the first byte that is not valid UTF-8, so the rest of the parser need not.
func (p *tomlParser) checkUTF8() error {
	line, col := 1, 1
	for i := 0; i < len(p.src); {
		r, size := utf8.DecodeRune(p.src[i:])
		if r == utf8.RuneError && size <= 1 {
			return &tomlError{Line: line, Col: col, Msg: "invalid UTF-8"}
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return nil
}

func (p *tomlParser) errorf(line, col int, format string, args ...any) error {
	return &tomlError{Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

func (p *tomlParser) unsupported(line, col int, format string, args ...any) error {
	return &tomlError{Line: line, Col: col, Msg: fmt.Sprintf(format, args...), Unsupported: true}
}

func (p *tomlParser) eof() bool { return p.pos >= len(p.src) }

// peek returns the byte at the cursor, 0 at the end of input.
func (p *tomlParser) peek() byte { return p.peekAt(0) }

func (p *tomlParser) peekAt(n int) byte {
	if p.pos+n >= len(p.src) {
		return 0
	}
	return p.src[p.pos+n]
}

// advance moves past one byte; columns count characters, so UTF-8 continuation bytes do not count.
func (p *tomlParser) advance() {
	b := p.src[p.pos]
	p.pos++
	switch {
	case b == '\n':
		p.line, p.col = p.line+1, 1
	case b&0xC0 != 0x80:
		p.col++
	}
}

func (p *tomlParser) advanceN(n int) {
	for range n {
		p.advance()
	}
}

func (p *tomlParser) hasPrefix(s string) bool {
	return strings.HasPrefix(string(p.src[p.pos:min(len(p.src), p.pos+len(s))]), s)
}

func (p *tomlParser) skipSpace() {
	for c := p.peek(); !p.eof() && (c == ' ' || c == '\t'); c = p.peek() {
		p.advance()
	}
}

// isControl reports the characters TOML allows in no comment or string, tab excepted.
func isControl(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7F }

// expression parses one line: empty, a comment, a table header or a key/value.
func (p *tomlParser) expression() error {
	p.skipSpace()
	switch c := p.peek(); {
	case p.eof(), c == '#', c == '\n', c == '\r':
	case c == '[':
		if err := p.tableHeader(); err != nil {
			return err
		}
		return p.endOfLine("expected a newline after the table header")
	default:
		if err := p.keyValue(p.cur); err != nil {
			return err
		}
		return p.endOfLine("expected a newline after the value (one key/value per line)")
	}
	return p.endOfLine("expected a newline")
}

// endOfLine consumes trailing whitespace, a comment and the newline.
func (p *tomlParser) endOfLine(what string) error {
	p.skipSpace()
	if p.peek() == '#' {
		if err := p.comment(); err != nil {
			return err
		}
	}
	if p.eof() {
		return nil
	}
	return p.newline(what)
}

// newline consumes LF or CRLF; a CR on its own is not a newline in TOML.
func (p *tomlParser) newline(what string) error {
	switch {
	case p.peek() == '\n':
		p.advance()
		return nil
	case p.peek() == '\r' && p.peekAt(1) == '\n':
		p.advanceN(2)
		return nil
	case p.peek() == '\r':
		return p.errorf(p.line, p.col, "carriage return not followed by a newline")
	}
	return p.errorf(p.line, p.col, "%s", what)
}

func (p *tomlParser) comment() error {
	p.advance() // #
	for !p.eof() && p.peek() != '\n' && p.peek() != '\r' {
		if c := p.peek(); isControl(c) {
			return p.errorf(p.line, p.col, "control character U+%04X in comment", c)
		}
		p.advance()
	}
	return nil
}

// skipArraySpace skips whitespace, newlines and comments between array elements.
func (p *tomlParser) skipArraySpace() error {
	for !p.eof() {
		switch p.peek() {
		case ' ', '\t':
			p.advance()
		case '#':
			if err := p.comment(); err != nil {
				return err
			}
		case '\n', '\r':
			if err := p.newline(""); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

func isBareKeyChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// key parses one simple key: bare, "basic" or 'literal'.
func (p *tomlParser) key() (string, error) {
	switch c := p.peek(); {
	case c == '"':
		if p.hasPrefix(`"""`) {
			return "", p.errorf(p.line, p.col, "a key cannot be a multi-line string")
		}
		return p.basicString()
	case c == '\'':
		if p.hasPrefix(`'''`) {
			return "", p.errorf(p.line, p.col, "a key cannot be a multi-line string")
		}
		return p.literalString()
	case isBareKeyChar(c):
		start := p.pos
		for isBareKeyChar(p.peek()) {
			p.advance()
		}
		return string(p.src[start:p.pos]), nil
	case p.eof():
		return "", p.errorf(p.line, p.col, "expected a key, found the end of the file")
	}
	return "", p.errorf(p.line, p.col, "expected a key")
}

// keyValue parses "key = value" into t.
func (p *tomlParser) keyValue(t *tomlTable) error {
	line, col := p.line, p.col
	k, err := p.key()
	if err != nil {
		return err
	}
	p.skipSpace()
	if p.peek() == '.' {
		return p.unsupported(p.line, p.col, "dotted key %q", k)
	}
	if p.peek() != '=' {
		return p.errorf(p.line, p.col, "expected \"=\" after key %q", k)
	}
	if prev, ok := t.Values[k]; ok {
		return p.errorf(line, col, "duplicate key %q (first defined at line %d)", k, prev.Line)
	}
	p.advance()
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return err
	}
	t.set(k, v)
	return nil
}

// tableHeader parses [a.b] or [[a.b]] and makes that table the current one.
func (p *tomlParser) tableHeader() error {
	line, col := p.line, p.col
	p.advance() // [
	array := p.peek() == '['
	if array {
		p.advance()
	}
	var keys []string
	for {
		p.skipSpace()
		k, err := p.key()
		if err != nil {
			return err
		}
		keys = append(keys, k)
		p.skipSpace()
		if p.peek() != '.' {
			break
		}
		p.advance()
	}
	if p.peek() != ']' || (array && p.peekAt(1) != ']') {
		if array {
			return p.errorf(p.line, p.col, "expected \"]]\" to close the table header")
		}
		return p.errorf(p.line, p.col, "expected \"]\" to close the table header")
	}
	p.advance()
	if array {
		p.advance()
	}
	return p.openTable(keys, array, line, col)
}

// openTable finds or creates the table a header names, following TOML's rules
// on implicit tables, redefinition and arrays of tables.
func (p *tomlParser) openTable(keys []string, array bool, line, col int) error {
	t := p.root
	for _, k := range keys[:len(keys)-1] {
		v, ok := t.Values[k]
		switch {
		case !ok:
			nt := newTOMLTable()
			t.set(k, &tomlValue{Kind: tomlKindTable, Table: nt, Line: line, Col: col})
			t = nt
		case v.Kind == tomlKindTable && !v.Table.inline:
			t = v.Table
		case v.Kind == tomlKindArray && v.tableArray:
			t = v.Array[len(v.Array)-1].Table
		default:
			return p.errorf(line, col, "key %q is already defined as %s at line %d", k, describe(v), v.Line)
		}
	}
	last := keys[len(keys)-1]
	v, ok := t.Values[last]
	if array {
		nt := newTOMLTable()
		nt.defined = true
		elem := &tomlValue{Kind: tomlKindTable, Table: nt, Line: line, Col: col}
		switch {
		case !ok:
			t.set(last, &tomlValue{Kind: tomlKindArray, Array: []*tomlValue{elem}, Line: line, Col: col, tableArray: true})
		case v.Kind == tomlKindArray && v.tableArray:
			v.Array = append(v.Array, elem)
		default:
			return p.errorf(line, col, "cannot add to array of tables %q: it is already defined as %s at line %d", last, describe(v), v.Line)
		}
		p.cur = nt
		return nil
	}
	switch {
	case !ok:
		nt := newTOMLTable()
		nt.defined = true
		t.set(last, &tomlValue{Kind: tomlKindTable, Table: nt, Line: line, Col: col})
		p.cur = nt
		return nil
	case v.Kind == tomlKindTable && !v.Table.inline && !v.Table.defined:
		v.Table.defined = true
		v.Line, v.Col = line, col
		p.cur = v.Table
		return nil
	}
	return p.errorf(line, col, "table %q is already defined as %s at line %d", last, describe(v), v.Line)
}

// describe names what a value is, for redefinition errors.
func describe(v *tomlValue) string {
	switch {
	case v.tableArray:
		return "an array of tables"
	case v.Kind == tomlKindTable && v.Table.inline:
		return "an inline table"
	}
	return v.Kind.String()
}

// value parses any value at the cursor.
func (p *tomlParser) value() (*tomlValue, error) {
	line, col := p.line, p.col
	v := &tomlValue{Line: line, Col: col}
	var err error
	switch c := p.peek(); {
	case p.eof() || c == '\n' || c == '\r' || c == '#':
		return nil, p.errorf(line, col, "expected a value")
	case c == '"':
		v.Kind = tomlKindString
		if p.hasPrefix(`"""`) {
			v.Str, err = p.multiLineBasicString()
		} else {
			v.Str, err = p.basicString()
		}
	case c == '\'':
		v.Kind = tomlKindString
		if p.hasPrefix(`'''`) {
			v.Str, err = p.multiLineLiteralString()
		} else {
			v.Str, err = p.literalString()
		}
	case c == '[':
		err = p.nested(func() error { return p.array(v) })
	case c == '{':
		err = p.nested(func() error { return p.inlineTable(v) })
	case c == 't' && p.hasPrefix("true"), c == 'f' && p.hasPrefix("false"):
		v.Kind, v.Bool = tomlKindBool, c == 't'
		p.advanceN(len(strconv.FormatBool(v.Bool)))
	default:
		err = p.number(v)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (p *tomlParser) nested(parse func() error) error {
	if p.depth >= maxTOMLDepth {
		return p.unsupported(p.line, p.col, "arrays and inline tables nested more than %d deep", maxTOMLDepth)
	}
	p.depth++
	defer func() { p.depth-- }()
	return parse()
}

var (
	tomlFloatRE    = regexp.MustCompile(`^[+-]?(?:(?:0|[1-9](?:_?[0-9])*)(?:\.[0-9](?:_?[0-9])*(?:[eE][+-]?[0-9](?:_?[0-9])*)?|[eE][+-]?[0-9](?:_?[0-9])*)|inf|nan)$`)
	tomlDateRE     = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	tomlDateTimeRE = regexp.MustCompile(`^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?)?|[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?)$`)
)

func isNumberChar(c byte) bool {
	return isBareKeyChar(c) || c == '+' || c == '.' || c == ':'
}

// number parses an integer, and tells dates, times and floats apart from invalid input.
func (p *tomlParser) number(v *tomlValue) error {
	line, col := p.line, p.col
	start := p.pos
	for isNumberChar(p.peek()) {
		p.advance()
	}
	tok := string(p.src[start:p.pos])
	// A date and a time may be separated by a space: 1979-05-27 07:32:00.
	if tomlDateRE.MatchString(tok) && p.peek() == ' ' && isDigit(p.peekAt(1)) {
		p.advance()
		for isNumberChar(p.peek()) {
			p.advance()
		}
		tok = string(p.src[start:p.pos])
	}
	switch {
	case tok == "":
		return p.errorf(line, col, "expected a value")
	case tomlDateTimeRE.MatchString(tok) && validDateTime(tok):
		return p.unsupported(line, col, "date or time value")
	case tomlDateTimeRE.MatchString(tok):
		return p.errorf(line, col, "invalid date or time")
	case tomlFloatRE.MatchString(tok):
		return p.unsupported(line, col, "floating-point value")
	}
	n, err := parseTOMLInteger(tok)
	if err != nil {
		return p.errorf(line, col, "%v", err)
	}
	v.Kind, v.Int = tomlKindInteger, n
	return nil
}

var (
	tomlDatePartRE   = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}`)
	tomlTimePartRE   = regexp.MustCompile(`[0-9]{2}:[0-9]{2}:[0-9]{2}`)
	tomlOffsetPartRE = regexp.MustCompile(`[+-]([0-9]{2}):([0-9]{2})$`)
)

// validDateTime checks the ranges of a token shaped like a date or time, so
// that a 30th of February is called invalid rather than unsupported.
func validDateTime(tok string) bool {
	if d := tomlDatePartRE.FindString(tok); d != "" {
		if _, err := time.Parse("2006-01-02", d); err != nil {
			return false
		}
	}
	if t := tomlTimePartRE.FindString(tok); t != "" && t[6:] != "60" { // RFC 3339 allows a leap second
		if _, err := time.Parse("15:04:05", t); err != nil {
			return false
		}
	}
	if m := tomlOffsetPartRE.FindStringSubmatch(tok); m != nil && (m[1] > "23" || m[2] > "59") {
		return false
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseTOMLInteger parses a TOML integer: decimal with optional sign and no
// leading zeros, or 0x/0o/0b without sign; underscores only between digits.
func parseTOMLInteger(tok string) (int64, error) {
	invalid := fmt.Errorf("invalid value (not a string, integer, boolean, array or table)")
	digits, sign, base := tok, "", 10
	if digits != "" && (digits[0] == '+' || digits[0] == '-') {
		sign, digits = digits[:1], digits[1:]
	}
	if len(digits) > 2 && digits[0] == '0' {
		switch digits[1] {
		case 'x':
			base = 16
		case 'o':
			base = 8
		case 'b':
			base = 2
		}
		if base != 10 {
			if sign != "" {
				return 0, fmt.Errorf("a sign is not allowed on a hexadecimal, octal or binary integer")
			}
			digits = digits[2:]
		}
	}
	if digits == "" {
		return 0, invalid
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c == '_' {
			if i == 0 || i == len(digits)-1 || digits[i+1] == '_' {
				return 0, fmt.Errorf("underscores in an integer must be between digits")
			}
			continue
		}
		if !isDigitOfBase(c, base) {
			return 0, invalid
		}
	}
	if base == 10 && len(digits) > 1 && digits[0] == '0' {
		return 0, fmt.Errorf("leading zeros are not allowed in an integer")
	}
	n, err := strconv.ParseInt(sign+strings.ReplaceAll(digits, "_", ""), base, 64)
	if err != nil {
		return 0, fmt.Errorf("integer out of range (64-bit signed)")
	}
	return n, nil
}

func isDigitOfBase(c byte, base int) bool {
	switch base {
	case 2:
		return c == '0' || c == '1'
	case 8:
		return c >= '0' && c <= '7'
	case 16:
		return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
	}
	return isDigit(c)
}

// basicString parses "..." with escapes, on one line.
func (p *tomlParser) basicString() (string, error) {
	line, col := p.line, p.col
	p.advance() // "
	var b strings.Builder
	for {
		c := p.peek()
		switch {
		case p.eof() || c == '\n' || c == '\r':
			return "", p.errorf(line, col, "unterminated string")
		case c == '"':
			p.advance()
			return b.String(), nil
		case c == '\\':
			if err := p.escape(&b); err != nil {
				return "", err
			}
		case isControl(c):
			return "", p.errorf(p.line, p.col, "control character U+%04X in string (write it as an escape)", c)
		default:
			b.WriteByte(c)
			p.advance()
		}
	}
}

// multiLineBasicString parses """...""": a newline right after the opening
// quotes is dropped, and a backslash at the end of a line drops the line break
// and the whitespace that follows. CRLF in the value becomes LF, which TOML
// leaves to the parser.
func (p *tomlParser) multiLineBasicString() (string, error) {
	line, col := p.line, p.col
	p.advanceN(3)
	p.skipFirstNewline()
	var b strings.Builder
	for {
		c := p.peek()
		switch {
		case p.eof():
			return "", p.errorf(line, col, "unterminated multi-line string")
		case c == '"':
			if done, err := p.closingQuotes(&b, '"'); done || err != nil {
				return b.String(), err
			}
		case c == '\\' && p.lineEndingBackslash():
			if err := p.trimWhitespace(); err != nil {
				return "", err
			}
		case c == '\\':
			if err := p.escape(&b); err != nil {
				return "", err
			}
		case c == '\n' || c == '\r':
			if err := p.newline(""); err != nil {
				return "", err
			}
			b.WriteByte('\n')
		case isControl(c):
			return "", p.errorf(p.line, p.col, "control character U+%04X in string (write it as an escape)", c)
		default:
			b.WriteByte(c)
			p.advance()
		}
	}
}

// literalString parses '...': no escapes, one line.
func (p *tomlParser) literalString() (string, error) {
	line, col := p.line, p.col
	p.advance() // '
	start := p.pos
	for {
		c := p.peek()
		switch {
		case p.eof() || c == '\n' || c == '\r':
			return "", p.errorf(line, col, "unterminated string")
		case c == '\'':
			s := string(p.src[start:p.pos])
			p.advance()
			return s, nil
		case isControl(c):
			return "", p.errorf(p.line, p.col, "control character U+%04X in literal string", c)
		}
		p.advance()
	}
}

// multiLineLiteralString parses a literal string between three single quotes
// on each side: no escapes; a newline right after the opening quotes is dropped.
func (p *tomlParser) multiLineLiteralString() (string, error) {
	line, col := p.line, p.col
	p.advanceN(3)
	p.skipFirstNewline()
	var b strings.Builder
	for {
		c := p.peek()
		switch {
		case p.eof():
			return "", p.errorf(line, col, "unterminated multi-line string")
		case c == '\'':
			if done, err := p.closingQuotes(&b, '\''); done || err != nil {
				return b.String(), err
			}
		case c == '\n' || c == '\r':
			if err := p.newline(""); err != nil {
				return "", err
			}
			b.WriteByte('\n')
		case isControl(c):
			return "", p.errorf(p.line, p.col, "control character U+%04X in literal string", c)
		default:
			b.WriteByte(c)
			p.advance()
		}
	}
}

func (p *tomlParser) skipFirstNewline() {
	switch {
	case p.peek() == '\n':
		p.advance()
	case p.peek() == '\r' && p.peekAt(1) == '\n':
		p.advanceN(2)
	}
}

// closingQuotes handles a run of quotes in a multi-line string: one or two
// are content, three close it, and up to two more before those three are
// content too (""""" is a quote followed by the closing three). Six or more is an error.
func (p *tomlParser) closingQuotes(b *strings.Builder, q byte) (done bool, err error) {
	n := 0
	for p.peekAt(n) == q {
		n++
	}
	if n > 5 {
		return false, p.errorf(p.line, p.col, "too many quotes in a row in a multi-line string")
	}
	if n >= 3 {
		b.WriteString(strings.Repeat(string(q), n-3))
		p.advanceN(n)
		return true, nil
	}
	b.WriteString(strings.Repeat(string(q), n))
	p.advanceN(n)
	return false, nil
}

// lineEndingBackslash reports whether the backslash at the cursor is followed
// only by whitespace up to the end of the line.
func (p *tomlParser) lineEndingBackslash() bool {
	i := 1
	for c := p.peekAt(i); c == ' ' || c == '\t'; c = p.peekAt(i) {
		i++
	}
	return p.peekAt(i) == '\n' || (p.peekAt(i) == '\r' && p.peekAt(i+1) == '\n')
}

// trimWhitespace skips a line-ending backslash and all whitespace and newlines after it.
func (p *tomlParser) trimWhitespace() error {
	p.advance() // \
	for !p.eof() {
		switch p.peek() {
		case ' ', '\t':
			p.advance()
		case '\n', '\r':
			if err := p.newline(""); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

// escape decodes one backslash escape of a basic string.
func (p *tomlParser) escape(b *strings.Builder) error {
	line, col := p.line, p.col
	p.advance() // \
	c := p.peek()
	simple := map[byte]byte{'b': '\b', 't': '\t', 'n': '\n', 'f': '\f', 'r': '\r', '"': '"', '\\': '\\'}
	if r, ok := simple[c]; ok {
		b.WriteByte(r)
		p.advance()
		return nil
	}
	if c != 'u' && c != 'U' {
		if p.eof() || isControl(c) || c >= utf8.RuneSelf {
			return p.errorf(line, col, "invalid escape in string")
		}
		return p.errorf(line, col, "invalid escape \\%c in string", c)
	}
	n := 4
	if c == 'U' {
		n = 8
	}
	p.advance()
	hex := p.src[p.pos:min(len(p.src), p.pos+n)]
	valid := len(hex) == n
	for _, h := range hex {
		valid = valid && isDigitOfBase(h, 16)
	}
	if !valid {
		return p.errorf(line, col, "invalid escape \\%c: needs exactly %d hexadecimal digits", c, n)
	}
	code, _ := strconv.ParseUint(string(hex), 16, 32)
	r := rune(code)
	if code > utf8.MaxRune || !utf8.ValidRune(r) {
		return p.errorf(line, col, "invalid escape \\%c%s: not a Unicode scalar value", c, hex)
	}
	b.WriteRune(r)
	p.advanceN(n)
	return nil
}

// array parses [ v, v, ... ]: newlines and comments may appear between elements, and a trailing comma.
func (p *tomlParser) array(v *tomlValue) error {
	v.Kind = tomlKindArray
	line, col := p.line, p.col
	p.advance() // [
	for {
		if err := p.skipArraySpace(); err != nil {
			return err
		}
		if p.eof() {
			return p.errorf(line, col, "unterminated array")
		}
		if p.peek() == ']' {
			p.advance()
			return nil
		}
		elem, err := p.value()
		if err != nil {
			return err
		}
		v.Array = append(v.Array, elem)
		if err := p.skipArraySpace(); err != nil {
			return err
		}
		switch {
		case p.eof():
			return p.errorf(line, col, "unterminated array")
		case p.peek() == ',':
			p.advance()
		case p.peek() == ']':
			p.advance()
			return nil
		default:
			return p.errorf(p.line, p.col, "expected \",\" or \"]\" after an array element")
		}
	}
}

// inlineTable parses { k = v, ... }: on one line (values aside), no trailing comma.
func (p *tomlParser) inlineTable(v *tomlValue) error {
	v.Kind = tomlKindTable
	v.Table = newTOMLTable()
	v.Table.defined, v.Table.inline = true, true
	line, col := p.line, p.col
	p.advance() // {
	p.skipSpace()
	if p.peek() == '}' {
		p.advance()
		return nil
	}
	for {
		p.skipSpace()
		if err := p.inlineTableCheck(line, col); err != nil {
			return err
		}
		if p.peek() == '}' {
			return p.errorf(p.line, p.col, "trailing comma in an inline table")
		}
		if err := p.keyValue(v.Table); err != nil {
			return err
		}
		p.skipSpace()
		if err := p.inlineTableCheck(line, col); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.advance()
		case '}':
			p.advance()
			return nil
		default:
			return p.errorf(p.line, p.col, "expected \",\" or \"}\" in an inline table")
		}
	}
}

func (p *tomlParser) inlineTableCheck(line, col int) error {
	switch {
	case p.eof():
		return p.errorf(line, col, "unterminated inline table")
	case p.peek() == '\n' || p.peek() == '\r':
		return p.errorf(p.line, p.col, "newline in an inline table")
	}
	return nil
}
