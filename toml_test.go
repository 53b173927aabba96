package main

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// tomlToGo turns a parsed table into plain Go values, for comparing documents by meaning.
func tomlToGo(v *tomlValue) any {
	switch v.Kind {
	case tomlKindString:
		return v.Str
	case tomlKindInteger:
		return v.Int
	case tomlKindBool:
		return v.Bool
	case tomlKindArray:
		a := []any{}
		for _, e := range v.Array {
			a = append(a, tomlToGo(e))
		}
		return a
	}
	return tomlTableToGo(v.Table)
}

func tomlTableToGo(t *tomlTable) map[string]any {
	m := map[string]any{}
	for _, k := range t.Keys {
		m[k] = tomlToGo(t.Values[k])
	}
	return m
}

// encodeTOML writes a table back as TOML: every key quoted, tables inline.
func encodeTOML(t *tomlTable) string {
	var b strings.Builder
	for _, k := range t.Keys {
		fmt.Fprintf(&b, "%s = %s\n", quoteTOML(k), encodeTOMLValue(t.Values[k]))
	}
	return b.String()
}

func encodeTOMLValue(v *tomlValue) string {
	switch v.Kind {
	case tomlKindString:
		return quoteTOML(v.Str)
	case tomlKindInteger:
		return strconv.FormatInt(v.Int, 10)
	case tomlKindBool:
		return strconv.FormatBool(v.Bool)
	case tomlKindArray:
		var elems []string
		for _, e := range v.Array {
			elems = append(elems, encodeTOMLValue(e))
		}
		return "[" + strings.Join(elems, ", ") + "]"
	}
	var kvs []string
	for _, k := range v.Table.Keys {
		kvs = append(kvs, quoteTOML(k)+" = "+encodeTOMLValue(v.Table.Values[k]))
	}
	return "{" + strings.Join(kvs, ", ") + "}"
}

func quoteTOML(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7F:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

type m = map[string]any
type a = []any

func TestTOMLValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want m
	}{
		{"empty", "", m{}},
		{"only comments", "# a\n  # b\n\n", m{}},
		{"comment without newline at end", "# x", m{}},
		{"bare keys", "key = 1\nbare_key = 2\nbare-key = 3\n1234 = 4\n", m{"key": int64(1), "bare_key": int64(2), "bare-key": int64(3), "1234": int64(4)}},
		{"quoted keys", `"127.0.0.1" = 1` + "\n" + `"ʎǝʞ" = 2` + "\n" + `'quoted "value"' = 3` + "\n" + `"" = 4` + "\n" + `"a\tb" = 5`,
			m{"127.0.0.1": int64(1), "ʎǝʞ": int64(2), `quoted "value"`: int64(3), "": int64(4), "a\tb": int64(5)}},
		{"quoted and bare key are the same key only when equal", `a = 1` + "\n" + `"b" = 2`, m{"a": int64(1), "b": int64(2)}},
		{"whitespace around", "\t key\t=\t\"v\" \t# c\n", m{"key": "v"}},
		{"CRLF", "a = 1\r\nb = 'x'\r\n", m{"a": int64(1), "b": "x"}},
		{"no newline at end", `a = "x"`, m{"a": "x"}},
		{"escapes", `s = "\b\t\n\f\r\"\\ \u00E9 \U0001F600 \u0000"`, m{"s": "\b\t\n\f\r\"\\ é 😀 \x00"}},
		{"escape max rune", `s = "\U0010FFFF"`, m{"s": "\U0010FFFF"}},
		{"tab in string", "s = \"a\tb\"\nl = 'c\td'", m{"s": "a\tb", "l": "c\td"}},
		{"literal", `path = 'C:\Users\nodejs\templates'`, m{"path": `C:\Users\nodejs\templates`}},
		{"literal with double quote", `q = 'Tom "Dubs" Preston'`, m{"q": `Tom "Dubs" Preston`}},
		{"empty strings", `a = ""` + "\n" + `b = ''` + "\n" + `c = """"""` + "\n" + `d = ''''''`, m{"a": "", "b": "", "c": "", "d": ""}},
		{"multi-line basic trims first newline", "s = \"\"\"\nRoses\nViolets\"\"\"", m{"s": "Roses\nViolets"}},
		{"multi-line basic trims first CRLF", "s = \"\"\"\r\nRoses\r\nViolets\"\"\"", m{"s": "Roses\nViolets"}},
		{"multi-line basic keeps second newline", "s = \"\"\"\n\nx\"\"\"", m{"s": "\nx"}},
		{"line-ending backslash", "s = \"\"\"\\\n  The quick \\\n\n\n  brown \\   \n  fox.\\\n\"\"\"", m{"s": "The quick brown fox."}},
		{"line-ending backslash CRLF", "s = \"\"\"a \\\r\n   b\"\"\"", m{"s": "a b"}},
		{"escaped backslash at line end is content", "s = \"\"\"a\\\\\nb\"\"\"", m{"s": "a\\\nb"}},
		{"multi-line basic quotes", `s = """Here are two quotation marks: "". Simple enough."""`, m{"s": `Here are two quotation marks: "". Simple enough.`}},
		{"multi-line basic ends with quotes", `s = """"This," she said, "is just a pointless statement.""""`, m{"s": `"This," she said, "is just a pointless statement."`}},
		{"multi-line basic five quotes", `s = """a"""""`, m{"s": `a""`}},
		{"multi-line basic escapes", `s = """\"\"\"\u0041"""`, m{"s": `"""A`}},
		{"multi-line basic tab", "s = \"\"\"a\tb\"\"\"", m{"s": "a\tb"}},
		{"multi-line literal", "s = '''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved. \\n\n'''", m{"s": "The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved. \\n\n"}},
		{"multi-line literal quotes", `s = '''Here are fifteen quotation marks: """""""""""""""'''`, m{"s": `Here are fifteen quotation marks: """""""""""""""`}},
		{"multi-line literal apostrophes at end", `s = ''''That,' she said, 'is still pointless.''''`, m{"s": `'That,' she said, 'is still pointless.'`}},
		{"integers", "a = +99\nb = 42\nc = 0\nd = -17\ne = 1_000\nf = 5_349_221\ng = 1_2_3_4_5\nh = -0\ni = +0",
			m{"a": int64(99), "b": int64(42), "c": int64(0), "d": int64(-17), "e": int64(1000), "f": int64(5349221), "g": int64(12345), "h": int64(0), "i": int64(0)}},
		{"prefixed integers", "a = 0xDEADBEEF\nb = 0xdeadbeef\nc = 0xdead_beef\nd = 0o01234567\ne = 0o755\nf = 0b11010110\ng = 0x0\nh = 0b0_1",
			m{"a": int64(0xDEADBEEF), "b": int64(0xDEADBEEF), "c": int64(0xDEADBEEF), "d": int64(0o1234567), "e": int64(0o755), "f": int64(0b11010110), "g": int64(0), "h": int64(1)}},
		{"integer limits", "max = 9223372036854775807\nmin = -9223372036854775808\nhex = 0x7FFFFFFFFFFFFFFF", m{"max": int64(9223372036854775807), "min": int64(-9223372036854775808), "hex": int64(0x7FFFFFFFFFFFFFFF)}},
		{"booleans", "t = true\nf = false", m{"t": true, "f": false}},
		{"arrays", `a = [ 1, 2, 3 ]` + "\n" + `b = [ "red", 'yellow', """green""" ]` + "\n" + `c = [ [ 1, 2 ], [3, 4, 5] ]` + "\n" + `d = []`,
			m{"a": a{int64(1), int64(2), int64(3)}, "b": a{"red", "yellow", "green"}, "c": a{a{int64(1), int64(2)}, a{int64(3), int64(4), int64(5)}}, "d": a{}}},
		{"mixed array", `a = [ 1, "x", true, [], {} ]`, m{"a": a{int64(1), "x", true, a{}, m{}}}},
		{"multi-line array", "a = [\n  1,\n  2, # two\n  # comment line\n  3,\n]\n", m{"a": a{int64(1), int64(2), int64(3)}}},
		{"array comment right after bracket", "a = [ # c\n 1 ]", m{"a": a{int64(1)}}},
		{"array only a comment", "a = [\n# nothing\n]", m{"a": a{}}},
		{"array CRLF", "a = [\r\n1,\r\n]", m{"a": a{int64(1)}}},
		{"array of inline tables", `p = [ { x = 1 }, { x = 2, y = "b" } ]`, m{"p": a{m{"x": int64(1)}, m{"x": int64(2), "y": "b"}}}},
		{"inline tables", `name = { first = "Tom", last = "Preston-Werner" }` + "\n" + `e = {}` + "\n" + `n = { a = { b = [1] } }`,
			m{"name": m{"first": "Tom", "last": "Preston-Werner"}, "e": m{}, "n": m{"a": m{"b": a{int64(1)}}}}},
		{"inline table with multi-line value", "t = { a = [\n1,\n2], s = \"\"\"x\ny\"\"\" }", m{"t": m{"a": a{int64(1), int64(2)}, "s": "x\ny"}}},
		{"tables", "[table-1]\nkey1 = \"some string\"\nkey2 = 123\n\n[table-2]\nkey1 = \"another string\"\n",
			m{"table-1": m{"key1": "some string", "key2": int64(123)}, "table-2": m{"key1": "another string"}}},
		{"empty table", "[t]", m{"t": m{}}},
		{"table header whitespace and quotes", "[ dog . \"tater.man\" ]\ntype = 'pug'\n[ j . 'ʞ' ]", m{"dog": m{"tater.man": m{"type": "pug"}}, "j": m{"ʞ": m{}}}},
		{"implicit super table defined later", "[x.y.z.w]\na = 1\n[x]\nb = 2", m{"x": m{"y": m{"z": m{"w": m{"a": int64(1)}}}, "b": int64(2)}}},
		{"sub tables in any order", "[a.b]\nc = 1\n[a]\nd = 2\n[a.e]", m{"a": m{"b": m{"c": int64(1)}, "d": int64(2), "e": m{}}}},
		{"array of tables", "[[services]]\nname = \"a\"\n\n[[services]]\nname = \"b\"\n\n[[services]]\n",
			m{"services": a{m{"name": "a"}, m{"name": "b"}, m{}}}},
		{"array of tables with sub tables", "[[fruits]]\nname = \"apple\"\n[fruits.physical]\ncolor = \"red\"\n[[fruits.varieties]]\nname = \"red delicious\"\n[[fruits.varieties]]\nname = \"granny smith\"\n[[fruits]]\nname = \"banana\"\n[[fruits.varieties]]\nname = \"plantain\"\n",
			m{"fruits": a{
				m{"name": "apple", "physical": m{"color": "red"}, "varieties": a{m{"name": "red delicious"}, m{"name": "granny smith"}}},
				m{"name": "banana", "varieties": a{m{"name": "plantain"}}},
			}}},
		{"array of tables in implicit table", "[[a.b]]\nx = 1\n[a]\ny = 2", m{"a": m{"b": a{m{"x": int64(1)}}, "y": int64(2)}}},
		{"header after array of tables", "[[a]]\n[a.b]\nx = 1\n[[a]]\n[a.b]\nx = 2", m{"a": a{m{"b": m{"x": int64(1)}}, m{"b": m{"x": int64(2)}}}}},
		{"keys after table go into table", "a = 1\n[t]\na = 2", m{"a": int64(1), "t": m{"a": int64(2)}}},
		{"hash in strings", `a = "#no comment"` + "\n" + `b = '#'`, m{"a": "#no comment", "b": "#"}},
		{"comment with unicode and tab", "a = 1 # é\t😀", m{"a": int64(1)}},
		{"value may be followed by comment directly", "a = 1#c\nb = [1]#c\nc = {}#c", m{"a": int64(1), "b": a{int64(1)}, "c": m{}}},
		{"DEL escaped", `a = "\u007F"`, m{"a": "\x7f"}},
		{"the reference config", "[[services]]\nname = \"pgo\"\nuser = \"miek\"\nrepository = \"https://github.com/miekg/pgo\"\nregistries = [ \"user:authtoken@registry\" ] # or just authtoken@registry\ncompose = \"compose.yaml\"\nbranch = \"main\"\nenv = [ \"MYENV=bla\", \"OTHERENV=bliep\"]\nurls = { \"pgo.science.ru.nl\" = \"pgo:5007\" }\nnetworks = [ \"reverseproxy\" ]\n# import = \"Caddyfile-import\"\n",
			m{"services": a{m{"name": "pgo", "user": "miek", "repository": "https://github.com/miekg/pgo", "registries": a{"user:authtoken@registry"}, "compose": "compose.yaml", "branch": "main", "env": a{"MYENV=bla", "OTHERENV=bliep"}, "urls": m{"pgo.science.ru.nl": "pgo:5007"}, "networks": a{"reverseproxy"}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, err := parseTOML([]byte(tc.doc))
			if err != nil {
				t.Fatalf("parseTOML(%q): %v", tc.doc, err)
			}
			if got := tomlTableToGo(root); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseTOML(%q)\n got %#v\nwant %#v", tc.doc, got, tc.want)
			}
			checkRoundTrip(t, root)
		})
	}
}

func TestTOMLInvalid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // the whole error message
	}{
		// Keys and key/values.
		{"key without value", "key = # no value", `invalid TOML: expected a value at line 1, column 7`},
		{"key without equals", "key\n", `invalid TOML: expected "=" after key "key" at line 1, column 4`},
		{"key without value at eof", "key =", `invalid TOML: expected a value at line 1, column 6`},
		{"value on next line", "key =\n1", `invalid TOML: expected a value at line 1, column 6`},
		{"two key/values on one line", `first = "Tom" last = "Preston-Werner"`, `invalid TOML: expected a newline after the value (one key/value per line) at line 1, column 15`},
		{"no key", "= 1", `invalid TOML: expected a key at line 1, column 1`},
		{"bare key with bad char", "a!b = 1", `invalid TOML: expected "=" after key "a" at line 1, column 2`},
		{"duplicate key", "name = \"a\"\nname = \"b\"", `invalid TOML: duplicate key "name" (first defined at line 1) at line 2, column 1`},
		{"duplicate key bare and quoted", "spelling = 1\n\"spelling\" = 2", `invalid TOML: duplicate key "spelling" (first defined at line 1) at line 2, column 1`},
		{"duplicate key in inline table", "a = { b = 1, b = 2 }", `invalid TOML: duplicate key "b" (first defined at line 1) at line 1, column 14`},
		{"multi-line key", "\"\"\"a\"\"\" = 1", `invalid TOML: a key cannot be a multi-line string at line 1, column 1`},
		{"key/value after header on the same line", "[a] b = 1", `invalid TOML: expected a newline after the table header at line 1, column 5`},

		// Tables.
		{"table redefined", "[fruit]\napple = 1\n\n[fruit]\norange = 2", `invalid TOML: table "fruit" is already defined as a table at line 1 at line 4, column 1`},
		{"table redefines key", "[fruit]\napple = \"red\"\n\n[fruit.apple]\ntexture = \"smooth\"", `invalid TOML: table "apple" is already defined as a string at line 2 at line 4, column 1`},
		{"key redefines table", "[a.b]\n[a]\nb = 1", `invalid TOML: duplicate key "b" (first defined at line 1) at line 3, column 1`},
		{"implicit table defined twice", "[a.b]\n[a]\n[a]", `invalid TOML: table "a" is already defined as a table at line 2 at line 3, column 1`},
		{"header extends inline table", "a = {}\n[a]", `invalid TOML: table "a" is already defined as an inline table at line 1 at line 2, column 1`},
		{"header into inline table", "a = { b = {} }\n[a.b.c]", `invalid TOML: key "a" is already defined as an inline table at line 1 at line 2, column 1`},
		{"header through a value", "a = 1\n[a.b]", `invalid TOML: key "a" is already defined as an integer at line 1 at line 2, column 1`},
		{"array of tables after table", "[fruit]\n[[fruit]]", `invalid TOML: cannot add to array of tables "fruit": it is already defined as a table at line 1 at line 2, column 1`},
		{"array of tables after static array", "fruits = []\n[[fruits]]", `invalid TOML: cannot add to array of tables "fruits": it is already defined as an array at line 1 at line 2, column 1`},
		{"table after array of tables", "[[fruits]]\n[fruits]", `invalid TOML: table "fruits" is already defined as an array of tables at line 1 at line 2, column 1`},
		{"header into static array of tables", "a = [{}]\n[a.b]", `invalid TOML: key "a" is already defined as an array at line 1 at line 2, column 1`},
		{"empty header", "[]", `invalid TOML: expected a key at line 1, column 2`},
		{"header trailing dot", "[a.]", `invalid TOML: expected a key at line 1, column 4`},
		{"header unclosed", "[a\nb = 1", `invalid TOML: expected "]" to close the table header at line 1, column 3`},
		{"array header unclosed", "[[a]\n", `invalid TOML: expected "]]" to close the table header at line 1, column 4`},
		{"array header with space between brackets", "[[a] ]", `invalid TOML: expected "]]" to close the table header at line 1, column 4`},
		{"array header spaced brackets", "[ [a] ]", `invalid TOML: expected a key at line 1, column 3`},

		// Strings.
		{"unterminated string", `a = "abc`, `invalid TOML: unterminated string at line 1, column 5`},
		{"newline in string", "a = \"ab\nc\"", `invalid TOML: unterminated string at line 1, column 5`},
		{"unterminated literal", "a = 'abc\n", `invalid TOML: unterminated string at line 1, column 5`},
		{"unterminated multi-line", "a = \"\"\"abc\n\n", `invalid TOML: unterminated multi-line string at line 1, column 5`},
		{"unterminated multi-line literal", "a = '''abc''", `invalid TOML: unterminated multi-line string at line 1, column 5`},
		{"six quotes", `a = """a""""""`, `invalid TOML: too many quotes in a row in a multi-line string at line 1, column 9`},
		{"bad escape", `a = "\a"`, `invalid TOML: invalid escape \a in string at line 1, column 6`},
		{"escape e is TOML 1.1", `a = "\e"`, `invalid TOML: invalid escape \e in string at line 1, column 6`},
		{"escape x is TOML 1.1", `a = "\x41"`, `invalid TOML: invalid escape \x in string at line 1, column 6`},
		{"escaped space", `a = "\ "`, `invalid TOML: invalid escape \  in string at line 1, column 6`},
		{"backslash space then text in multi-line", "a = \"\"\"\\ x\"\"\"", `invalid TOML: invalid escape \  in string at line 1, column 8`},
		{"short unicode escape", `a = "\u12"`, `invalid TOML: invalid escape \u: needs exactly 4 hexadecimal digits at line 1, column 6`},
		{"non-hex unicode escape", `a = "\u12G4"`, `invalid TOML: invalid escape \u: needs exactly 4 hexadecimal digits at line 1, column 6`},
		{"surrogate escape", `a = "\uD800"`, `invalid TOML: invalid escape \uD800: not a Unicode scalar value at line 1, column 6`},
		{"low surrogate escape", `a = "\uDFFF"`, `invalid TOML: invalid escape \uDFFF: not a Unicode scalar value at line 1, column 6`},
		{"escape beyond unicode", `a = "\U00110000"`, `invalid TOML: invalid escape \U00110000: not a Unicode scalar value at line 1, column 6`},
		{"huge escape", `a = "\UFFFFFFFF"`, `invalid TOML: invalid escape \UFFFFFFFF: not a Unicode scalar value at line 1, column 6`},
		{"escape in literal is literal, quote ends it", `a = 'a\'b'`, `invalid TOML: expected a newline after the value (one key/value per line) at line 1, column 9`},
		{"control char in string", "a = \"a\x01b\"", `invalid TOML: control character U+0001 in string (write it as an escape) at line 1, column 7`},
		{"DEL in string", "a = \"a\x7fb\"", `invalid TOML: control character U+007F in string (write it as an escape) at line 1, column 7`},
		{"NUL in literal", "a = 'a\x00b'", `invalid TOML: control character U+0000 in literal string at line 1, column 7`},
		{"control char in multi-line", "a = \"\"\"\n\x1b\"\"\"", `invalid TOML: control character U+001B in string (write it as an escape) at line 2, column 1`},
		{"control char in multi-line literal", "a = '''\x0c'''", `invalid TOML: control character U+000C in literal string at line 1, column 8`},
		{"bare CR in multi-line", "a = \"\"\"a\rb\"\"\"", `invalid TOML: carriage return not followed by a newline at line 1, column 9`},
		{"bare CR in multi-line literal", "a = '''a\rb'''", `invalid TOML: carriage return not followed by a newline at line 1, column 9`},
		{"CR in string", "a = \"a\rb\"", `invalid TOML: unterminated string at line 1, column 5`},

		// Whitespace, comments, encoding.
		{"bare CR line ending", "a = 1\rb = 2", `invalid TOML: carriage return not followed by a newline at line 1, column 6`},
		{"bare CR in comment", "# a\rb\n", `invalid TOML: carriage return not followed by a newline at line 1, column 4`},
		{"control char in comment", "# a\x07", `invalid TOML: control character U+0007 in comment at line 1, column 4`},
		{"DEL in comment", "a = 1 # \x7f", `invalid TOML: control character U+007F in comment at line 1, column 9`},
		{"invalid UTF-8", "a = 1\nb = \"\xff\"", `invalid TOML: invalid UTF-8 at line 2, column 6`},
		{"invalid UTF-8 in comment", "# \xc3\x28", `invalid TOML: invalid UTF-8 at line 1, column 3`},
		{"overlong UTF-8", "a = \"\xc0\xaf\"", `invalid TOML: invalid UTF-8 at line 1, column 6`},
		{"UTF-8 surrogate", "a = \"\xed\xa0\x80\"", `invalid TOML: invalid UTF-8 at line 1, column 6`},
		{"column counts characters", `é = 1`, `invalid TOML: expected a key at line 1, column 1`},
		{"column after multibyte", `a = "éé" x`, `invalid TOML: expected a newline after the value (one key/value per line) at line 1, column 10`},
		{"non-breaking space is not whitespace", "a =\u00a01", `invalid TOML: expected a value at line 1, column 4`},

		// Integers and other values.
		{"leading zero", "a = 01", `invalid TOML: leading zeros are not allowed in an integer at line 1, column 5`},
		{"leading zero negative", "a = -01", `invalid TOML: leading zeros are not allowed in an integer at line 1, column 5`},
		{"leading zero with underscore", "a = 0_1", `invalid TOML: leading zeros are not allowed in an integer at line 1, column 5`},
		{"double underscore", "a = 1__2", `invalid TOML: underscores in an integer must be between digits at line 1, column 5`},
		{"leading underscore", "a = _1", `invalid TOML: underscores in an integer must be between digits at line 1, column 5`},
		{"trailing underscore", "a = 1_", `invalid TOML: underscores in an integer must be between digits at line 1, column 5`},
		{"underscore after prefix", "a = 0x_1", `invalid TOML: underscores in an integer must be between digits at line 1, column 5`},
		{"signed hex", "a = +0x1", `invalid TOML: a sign is not allowed on a hexadecimal, octal or binary integer at line 1, column 5`},
		{"negative octal", "a = -0o7", `invalid TOML: a sign is not allowed on a hexadecimal, octal or binary integer at line 1, column 5`},
		{"capital hex prefix", "a = 0X1", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"bad octal digit", "a = 0o8", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"bad binary digit", "a = 0b2", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"empty hex", "a = 0x", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"too big", "a = 9223372036854775808", `invalid TOML: integer out of range (64-bit signed) at line 1, column 5`},
		{"too small", "a = -9223372036854775809", `invalid TOML: integer out of range (64-bit signed) at line 1, column 5`},
		{"hex too big", "a = 0x8000000000000000", `invalid TOML: integer out of range (64-bit signed) at line 1, column 5`},
		{"sign only", "a = +", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"double sign", "a = --1", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"bad float is not unsupported", "a = 1.", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"float with leading dot", "a = .5", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"capitalised boolean", "a = True", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"boolean with suffix", "a = truex", `invalid TOML: expected a newline after the value (one key/value per line) at line 1, column 9`},
		{"bare word", "a = yes", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},
		{"capital INF", "a = INF", `invalid TOML: invalid value (not a string, integer, boolean, array or table) at line 1, column 5`},

		// Arrays and inline tables.
		{"unterminated array", "a = [1, 2", `invalid TOML: unterminated array at line 1, column 5`},
		{"unterminated multi-line array", "a = [\n1,\n", `invalid TOML: unterminated array at line 1, column 5`},
		{"array missing comma", "a = [1 2]", `invalid TOML: expected "," or "]" after an array element at line 1, column 8`},
		{"array leading comma", "a = [,1]", `invalid TOML: expected a value at line 1, column 6`},
		{"array double comma", "a = [1,,2]", `invalid TOML: expected a value at line 1, column 8`},
		{"array bare CR", "a = [1,\r2]", `invalid TOML: carriage return not followed by a newline at line 1, column 8`},
		{"inline table trailing comma", "a = { b = 1, }", `invalid TOML: trailing comma in an inline table at line 1, column 14`},
		{"inline table newline", "a = { b = 1,\n c = 2 }", `invalid TOML: newline in an inline table at line 1, column 13`},
		{"inline table newline after brace", "a = {\n}", `invalid TOML: newline in an inline table at line 1, column 6`},
		{"inline table comment", "a = { b = 1 # c\n}", `invalid TOML: expected "," or "}" in an inline table at line 1, column 13`},
		{"inline table unterminated", "a = { b = 1", `invalid TOML: unterminated inline table at line 1, column 5`},
		{"inline table missing comma", "a = { b = 1 c = 2 }", `invalid TOML: expected "," or "}" in an inline table at line 1, column 13`},
		{"inline table empty with comma", "a = { , }", `invalid TOML: expected a key at line 1, column 7`},

		// Valid TOML outside the subset.
		{"float", "pi = 3.14", `unsupported TOML: floating-point value at line 1, column 6`},
		{"float exponent", "a = 5e+22", `unsupported TOML: floating-point value at line 1, column 5`},
		{"float underscore", "a = 224_617.445_991", `unsupported TOML: floating-point value at line 1, column 5`},
		{"float in array", "a = [1, -2E-3]", `unsupported TOML: floating-point value at line 1, column 9`},
		{"inf", "a = inf", `unsupported TOML: floating-point value at line 1, column 5`},
		{"negative inf", "a = -inf", `unsupported TOML: floating-point value at line 1, column 5`},
		{"nan", "a = +nan", `unsupported TOML: floating-point value at line 1, column 5`},
		{"offset date-time", "a = 1979-05-27T07:32:00Z", `unsupported TOML: date or time value at line 1, column 5`},
		{"offset date-time with space", "a = 1979-05-27 00:32:00.999999-07:00", `unsupported TOML: date or time value at line 1, column 5`},
		{"local date-time", "a = 1979-05-27T07:32:00", `unsupported TOML: date or time value at line 1, column 5`},
		{"local date", "a = 1979-05-27", `unsupported TOML: date or time value at line 1, column 5`},
		{"local time", "a = 07:32:00", `unsupported TOML: date or time value at line 1, column 5`},
		{"invalid date", "a = 2023-02-29", `invalid TOML: invalid date or time at line 1, column 5`},
		{"invalid time", "a = 24:00:00", `invalid TOML: invalid date or time at line 1, column 5`},
		{"invalid offset", "a = 1979-05-27T07:32:00+24:00", `invalid TOML: invalid date or time at line 1, column 5`},
		{"leap day", "a = 2024-02-29T23:59:60Z", `unsupported TOML: date or time value at line 1, column 5`},
		{"dotted key", "physical.color = \"orange\"", `unsupported TOML: dotted key "physical" at line 1, column 9`},
		{"dotted key with spaces", "a . b = 1", `unsupported TOML: dotted key "a" at line 1, column 3`},
		{"dotted key in inline table", "a = { b.c = 1 }", `unsupported TOML: dotted key "b" at line 1, column 8`},
		{"numeric dotted key", "3.14159 = \"pi\"", `unsupported TOML: dotted key "3" at line 1, column 2`},
		{"deep nesting", "a = " + strings.Repeat("[", 100) + strings.Repeat("]", 100), `unsupported TOML: arrays and inline tables nested more than 64 deep at line 1, column 69`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTOML([]byte(tc.doc))
			if err == nil {
				t.Fatalf("parseTOML(%q) accepted invalid or unsupported TOML", tc.doc)
			}
			if err.Error() != tc.want {
				t.Errorf("parseTOML(%q)\n got %s\nwant %s", tc.doc, err, tc.want)
			}
		})
	}
}

// TestTOMLValuePositions checks the lines and columns that config errors point at.
func TestTOMLValuePositions(t *testing.T) {
	doc := "# header\n[[services]]\nname = \"web\"\nenv = [\n  \"A=1\",\n  \"B=2\",\n]\n\n[[services]]\n  urls = { a = \"b:1\" }\n"
	root, err := parseTOML([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	services := root.Values["services"]
	first, second := services.Array[0], services.Array[1]
	env := first.Table.Values["env"]
	urls := second.Table.Values["urls"]
	got := []int{services.Line, first.Line, first.Table.Values["name"].Line, first.Table.Values["name"].Col, env.Line, env.Array[1].Line, env.Array[1].Col, second.Line, urls.Line, urls.Col, urls.Table.Values["a"].Col}
	want := []int{2, 2, 3, 8, 4, 6, 3, 9, 10, 10, 16}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("positions = %v, want %v", got, want)
	}
	if !reflect.DeepEqual(first.Table.Keys, []string{"name", "env"}) {
		t.Errorf("keys = %v, want file order", first.Table.Keys)
	}
}

// checkRoundTrip encodes a parsed document and parses it again: the meaning must not change.
func checkRoundTrip(t *testing.T, root *tomlTable) {
	t.Helper()
	enc := encodeTOML(root)
	again, err := parseTOML([]byte(enc))
	if err != nil {
		t.Fatalf("re-parsing the encoded document failed: %v\n%s", err, enc)
	}
	if got, want := tomlTableToGo(again), tomlTableToGo(root); !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed the document\n got %#v\nwant %#v\nencoded:\n%s", got, want, enc)
	}
}

func FuzzTOML(f *testing.F) {
	for _, s := range []string{
		"",
		"a = 1\n",
		"[[services]]\nname = \"web\"\nenv = [\n \"A=1\", # c\n]\nurls = { \"x.org\" = \"web:80\" }\n",
		"s = \"\"\"\\\n  a \\u00e9 \\U0001F600\"\"\"\nl = '''\nx'''\n",
		"[a.b]\n[a]\n[[c.d]]\n[c]\n",
		"a = [0x1F, 0o7, 0b1, -0, +1_000]\nb = {}\n",
		"a = 1979-05-27T07:32:00Z\n",
		"a = { b = [ { c = true } ] }\n",
		"\"\\uD800\" = 1",
		"a = \"\"\"\"\"\"\"\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root, err := parseTOML(data)
		if err != nil {
			var te *tomlError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *tomlError", err)
			}
			lines := strings.Count(string(data), "\n") + 1
			if te.Line < 1 || te.Line > lines || te.Col < 1 {
				t.Fatalf("error position %d:%d outside the document (%d lines): %v", te.Line, te.Col, lines, err)
			}
			return
		}
		if !utf8.Valid(data) {
			t.Fatalf("accepted invalid UTF-8")
		}
		checkRoundTrip(t, root)
		checkKeysSorted(t, root)
	})
}

// checkKeysSorted checks that Keys and Values of every table agree.
func checkKeysSorted(t *testing.T, tbl *tomlTable) {
	t.Helper()
	keys := append([]string(nil), tbl.Keys...)
	sort.Strings(keys)
	var mapKeys []string
	for k := range tbl.Values {
		mapKeys = append(mapKeys, k)
	}
	sort.Strings(mapKeys)
	if !reflect.DeepEqual(keys, mapKeys) && !(len(keys) == 0 && len(mapKeys) == 0) {
		t.Fatalf("table keys %q and values %q disagree", keys, mapKeys)
	}
}
