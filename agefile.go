package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// The age format, as far as pgo check reads it without a key
// (https://age-encryption.org/v1): a text header, "age-encryption.org/v1",
// then one stanza per recipient ("-> TYPE ARGS…" and a base64 body in lines
// of 64 columns, the last one shorter), then "--- MAC", then the binary
// payload. The armored form is that, base64 between PEM-like lines.

const (
	ageIntro       = "age-encryption.org/v1"
	ageArmorBegin  = "-----BEGIN AGE ENCRYPTED FILE-----"
	ageArmorEnd    = "-----END AGE ENCRYPTED FILE-----"
	ageColumns     = 64
	ageMinPayload  = 16 + 16 // the nonce and one chunk's tag, for an empty plain text
	ageMACEncoded  = 43      // 32 bytes, base64 without padding
	ageSSHEd25519  = "ssh-ed25519"
	ageMaxStanzas  = 1000
	ageMaxArgBytes = 1024
)

// ageHeader is what the header tells without a key.
type ageHeader struct {
	armored    bool
	recipients []string // each stanza's type, in order
}

// count is how many stanzas are of type typ.
func (h ageHeader) count(typ string) int {
	n := 0
	for _, r := range h.recipients {
		if r == typ {
			n++
		}
	}
	return n
}

var ageB64 = base64.RawStdEncoding.Strict()

// parseAgeFile checks that data is a well-formed age file, armored or not.
func parseAgeFile(data []byte) (ageHeader, error) {
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte(ageArmorBegin)) {
		bin, err := dearmorAge(trimmed)
		if err != nil {
			return ageHeader{}, err
		}
		h, err := parseAgeHeader(bin)
		h.armored = true
		return h, err
	}
	return parseAgeHeader(data)
}

// dearmorAge decodes the armored form: base64 with padding in lines of 64
// columns, the last one shorter, between the BEGIN and END lines.
func dearmorAge(data []byte) ([]byte, error) {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	if len(lines) < 3 || lines[len(lines)-1] != ageArmorEnd {
		return nil, errors.New("armored, but the last line is not " + ageArmorEnd)
	}
	var b64 strings.Builder
	body := lines[1 : len(lines)-1]
	for i, l := range body {
		if len(l) > ageColumns || i < len(body)-1 && len(l) != ageColumns {
			return nil, fmt.Errorf("armor line %d is not %d columns wide", i+2, ageColumns)
		}
		b64.WriteString(l)
	}
	bin, err := base64.StdEncoding.Strict().DecodeString(b64.String())
	if err != nil {
		return nil, fmt.Errorf("the armor is not base64: %v", err)
	}
	return bin, nil
}

// parseAgeHeader checks the binary form's header and that a payload follows.
func parseAgeHeader(data []byte) (ageHeader, error) {
	var h ageHeader
	line, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || string(line) != ageIntro {
		return h, errors.New("not an age file: it does not start with " + ageIntro)
	}
	for n := 2; ; n++ {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return h, fmt.Errorf("header line %d: the header ends before its MAC line (---)", n)
		}
		if mac, found := bytes.CutPrefix(line, []byte("--- ")); found {
			if len(h.recipients) == 0 {
				return h, errors.New("the header has no recipient")
			}
			if _, err := ageB64.DecodeString(string(mac)); err != nil || len(mac) != ageMACEncoded {
				return h, fmt.Errorf("header line %d: the MAC is not 32 bytes of base64", n)
			}
			if len(rest) < ageMinPayload {
				return h, errors.New("the payload after the header is missing or truncated")
			}
			return h, nil
		}
		typ, err := ageStanzaLine(line)
		if err != nil {
			return h, fmt.Errorf("header line %d: %v", n, err)
		}
		if len(h.recipients) == ageMaxStanzas {
			return h, fmt.Errorf("more than %d recipients", ageMaxStanzas)
		}
		h.recipients = append(h.recipients, typ)
		if rest, n, err = ageStanzaBody(rest, n); err != nil {
			return h, err
		}
	}
}

// ageStanzaLine checks "-> TYPE ARGS…" and returns TYPE.
func ageStanzaLine(line []byte) (string, error) {
	args, ok := bytes.CutPrefix(line, []byte("-> "))
	if !ok {
		return "", errors.New("expected a recipient stanza (->) or the MAC line (---)")
	}
	fields := strings.Split(string(args), " ")
	for _, f := range fields {
		if f == "" || len(f) > ageMaxArgBytes || strings.IndexFunc(f, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
			return "", errors.New("a stanza argument is empty or not printable ASCII")
		}
	}
	if fields[0] == ageSSHEd25519 && len(fields) != 3 {
		return "", errors.New("an ssh-ed25519 stanza has a tag and a share, no more, no less")
	}
	return fields[0], nil
}

// ageStanzaBody skips a stanza's body: base64 lines of 64 columns, ended
// by a shorter one (maybe empty). n is the number of the line before it.
func ageStanzaBody(rest []byte, n int) ([]byte, int, error) {
	for {
		n++
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, n, fmt.Errorf("header line %d: a stanza body does not end", n)
		}
		if len(line) > ageColumns {
			return nil, n, fmt.Errorf("header line %d: a stanza body line is wider than %d columns", n, ageColumns)
		}
		if _, err := ageB64.DecodeString(string(line)); err != nil {
			return nil, n, fmt.Errorf("header line %d: a stanza body is not base64", n)
		}
		rest = after
		if len(line) < ageColumns {
			return rest, n, nil
		}
	}
}

// secretsCheck is what pgo check says of the secrets file in checkout:
// a line for the file, and whether it is well formed. ok with line ""
// means there is no such file.
func secretsCheck(checkout string, svc *Service) (line string, ok bool) {
	data, rel, err := readSecretsFile(checkout, svc)
	switch {
	case err != nil:
		return err.Error(), false
	case data == nil:
		return "", true
	}
	h, err := parseAgeFile(data)
	if err != nil {
		return fmt.Sprintf("%s: not a well-formed age file: %v", rel, err), false
	}
	form := "binary"
	if h.armored {
		form = "armored"
	}
	usable := h.count(ageSSHEd25519)
	if usable == 0 {
		return fmt.Sprintf("%s: encrypted to no ssh-ed25519 recipient, so no pgod can decrypt it: encrypt it to the line pgoctl HOST:NAME//recipient prints", rel), false
	}
	return fmt.Sprintf("%s: well-formed age file (%s), %d recipients, %d of them ssh-ed25519; pgod decrypts it at deploy, pgo check cannot",
		rel, form, len(h.recipients), usable), true
}
