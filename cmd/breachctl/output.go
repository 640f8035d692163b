package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// outRow is one line of a bulk report.
type outRow struct {
	line     int64
	value    string   // the identifier as it appeared in the input
	exposed  bool     // meaningful when reason == ""
	breaches []string // breach names, when exposed
	reason   string   // why the row could not be checked
	// With --assess: the daemon policy's decision, what enforcing would
	// answer, and the rules that fired.
	decision, wouldBe string
	reasons           []string
}

// rowWriter renders report rows in one format. A row's line comes in two
// parts: its head, what the input row decides (all of the line for a row
// that could not be checked), rendered by the hashing workers, in
// parallel; and its tail, the answer, rendered by the writer, in order.
// Formatting a whole row on the writer made it the sweep's serial stage
// (bench/README.md).
type rowWriter interface {
	header(w *bufio.Writer)
	head(dst []byte, r *outRow) []byte
	tail(dst []byte, r *outRow) []byte // only for a checked row (reason == "")
}

// newRowWriter returns the writer of format's rows; terminal says the
// report goes to one.
func newRowWriter(format string, assess, terminal bool) (rowWriter, error) {
	switch format {
	case "csv":
		return csvWriter{assess: assess, terminal: terminal}, nil
	case "jsonl":
		return jsonlWriter{assess: assess}, nil
	}
	return nil, fmt.Errorf("unknown --format %q: want csv or jsonl", format)
}

// csvWriter writes: line,identifier,exposed,breaches,error (breaches joined
// by ';'), and with assess decision,would_be,reasons (joined by ';').
type csvWriter struct{ assess, terminal bool }

func (c csvWriter) header(w *bufio.Writer) {
	w.WriteString("line,identifier,exposed,breaches,error")
	if c.assess {
		w.WriteString(",decision,would_be,reasons")
	}
	w.WriteByte('\n')
}

func (c csvWriter) head(dst []byte, r *outRow) []byte {
	dst = strconv.AppendInt(dst, r.line, 10)
	dst = append(dst, ',')
	v := r.value
	if c.terminal {
		v = printable(v)
	}
	dst = appendCSVText(dst, v)
	if r.reason == "" {
		return dst
	}
	dst = append(dst, ",,,"...)
	dst = appendCSVField(dst, r.reason)
	if c.assess {
		dst = append(dst, ",,,"...) // no decision
	}
	return append(dst, '\n')
}

func (c csvWriter) tail(dst []byte, r *outRow) []byte {
	if r.exposed {
		dst = append(dst, ",yes,"...)
		dst = appendCSVField(dst, strings.Join(r.breaches, ";"))
		dst = append(dst, ',')
	} else {
		dst = append(dst, ",no,,"...)
	}
	if c.assess {
		dst = append(dst, ',')
		dst = append(dst, r.decision...)
		dst = append(dst, ',')
		dst = append(dst, r.wouldBe...)
		dst = append(dst, ',')
		dst = appendCSVField(dst, strings.Join(r.reasons, ";"))
	}
	return append(dst, '\n')
}

// appendCSVText appends an identifier as written, but for a spreadsheet:
// one starting with '=', '+', '-', '@', a tab or a carriage return is a
// formula to Excel, LibreOffice and Google Sheets (OWASP's "CSV
// injection"; "=cmd|'/C calc'!A0" runs a program), and a user base holds
// whatever its signups typed (a valid address may start with '=', '+' or
// '-', and may hold '|', "'" and '!'). Such a value gets a leading "'",
// which a spreadsheet takes as "text" and does not show. JSON Lines
// reports carry every identifier as written.
func appendCSVText(dst []byte, s string) []byte {
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		s = "'" + s
	}
	return appendCSVField(dst, s)
}

// printable returns s, or, if it holds a control character, a rune no
// terminal shows or bytes that are not UTF-8, s with those written as Go
// escapes (\x1b): a report written to a terminal must not hand it an
// escape sequence from a row (a title, a hyperlink, the clipboard).
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) }) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

func appendCSVField(dst []byte, s string) []byte {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	dst = append(dst, strings.ReplaceAll(s, `"`, `""`)...)
	return append(dst, '"')
}

// jsonlWriter writes one JSON object per row:
// {"line":1,"identifier":"a@example.com","exposed":true,"breaches":["SegaPass"]}
// {"line":2,"identifier":"x","error":"invalid email: no @"}
type jsonlWriter struct{ assess bool }

func (jsonlWriter) header(*bufio.Writer) {}

func (jsonlWriter) head(dst []byte, r *outRow) []byte {
	dst = append(dst, `{"line":`...)
	dst = strconv.AppendInt(dst, r.line, 10)
	dst = append(dst, `,"identifier":`...)
	dst = appendJSONString(dst, r.value)
	if r.reason == "" {
		return dst
	}
	dst = append(dst, `,"error":`...)
	dst = appendJSONString(dst, r.reason)
	return append(dst, "}\n"...)
}

func (j jsonlWriter) tail(dst []byte, r *outRow) []byte {
	if r.exposed {
		dst = append(dst, `,"exposed":true,"breaches":`...)
		dst = appendJSONStrings(dst, r.breaches)
	} else {
		dst = append(dst, `,"exposed":false`...)
	}
	if j.assess {
		dst = append(dst, `,"decision":`...)
		dst = appendJSONString(dst, r.decision)
		dst = append(dst, `,"would_be":`...)
		dst = appendJSONString(dst, r.wouldBe)
		dst = append(dst, `,"reasons":`...)
		dst = appendJSONStrings(dst, r.reasons)
	}
	return append(dst, "}\n"...)
}

// appendJSONStrings appends ss as a JSON array of strings.
func appendJSONStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	// The common case, an address or a breach name of printable ASCII
	// only, is one table lookup a byte and one copy.
	plain := true
	for i := 0; i < len(s); i++ {
		plain = plain && jsonPlain[s[i]]
	}
	if plain {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			case '\t':
				dst = append(dst, `\t`...)
			default:
				dst = append(dst, `\u00`...)
				dst = append(dst, hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonPlain marks the bytes a JSON string holds as they are: printable
// ASCII but the quote and the backslash.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// startCPUProfile profiles the process's CPU into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
