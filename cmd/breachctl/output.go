package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
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

// rowWriter writes report rows in one format.
type rowWriter interface {
	header(w *bufio.Writer)
	row(w *bufio.Writer, r *outRow)
}

func newRowWriter(format string, assess bool) (rowWriter, error) {
	switch format {
	case "csv":
		return csvWriter{assess: assess}, nil
	case "jsonl":
		return jsonlWriter{assess: assess}, nil
	}
	return nil, fmt.Errorf("unknown --format %q: want csv or jsonl", format)
}

// csvWriter writes: line,identifier,exposed,breaches,error (breaches joined
// by ';'), and with assess decision,would_be,reasons (joined by ';').
type csvWriter struct{ assess bool }

func (c csvWriter) header(w *bufio.Writer) {
	w.WriteString("line,identifier,exposed,breaches,error")
	if c.assess {
		w.WriteString(",decision,would_be,reasons")
	}
	w.WriteByte('\n')
}

func (c csvWriter) row(w *bufio.Writer, r *outRow) {
	w.Write(strconv.AppendInt(w.AvailableBuffer(), r.line, 10)) // no allocation a row
	w.WriteByte(',')
	writeCSVField(w, r.value)
	switch {
	case r.reason != "":
		w.WriteString(",,,")
		writeCSVField(w, r.reason)
	case r.exposed:
		w.WriteString(",yes,")
		writeCSVField(w, strings.Join(r.breaches, ";"))
		w.WriteByte(',')
	default:
		w.WriteString(",no,,")
	}
	if c.assess {
		w.WriteByte(',')
		w.WriteString(r.decision)
		w.WriteByte(',')
		w.WriteString(r.wouldBe)
		w.WriteByte(',')
		writeCSVField(w, strings.Join(r.reasons, ";"))
	}
	w.WriteByte('\n')
}

func writeCSVField(w *bufio.Writer, s string) {
	if !strings.ContainsAny(s, ",\"\r\n") {
		w.WriteString(s)
		return
	}
	w.WriteByte('"')
	w.WriteString(strings.ReplaceAll(s, `"`, `""`))
	w.WriteByte('"')
}

// jsonlWriter writes one JSON object per row:
// {"line":1,"identifier":"a@example.com","exposed":true,"breaches":["SegaPass"]}
// {"line":2,"identifier":"x","error":"invalid email: no @"}
type jsonlWriter struct{ assess bool }

func (jsonlWriter) header(*bufio.Writer) {}

func (j jsonlWriter) row(w *bufio.Writer, r *outRow) {
	w.WriteString(`{"line":`)
	w.Write(strconv.AppendInt(w.AvailableBuffer(), r.line, 10)) // no allocation a row
	w.WriteString(`,"identifier":`)
	writeJSONString(w, r.value)
	switch {
	case r.reason != "":
		w.WriteString(`,"error":`)
		writeJSONString(w, r.reason)
	case r.exposed:
		w.WriteString(`,"exposed":true,"breaches":[`)
		for i, name := range r.breaches {
			if i > 0 {
				w.WriteByte(',')
			}
			writeJSONString(w, name)
		}
		w.WriteByte(']')
	default:
		w.WriteString(`,"exposed":false`)
	}
	if j.assess && r.reason == "" {
		w.WriteString(`,"decision":`)
		writeJSONString(w, r.decision)
		w.WriteString(`,"would_be":`)
		writeJSONString(w, r.wouldBe)
		w.WriteString(`,"reasons":[`)
		for i, name := range r.reasons {
			if i > 0 {
				w.WriteByte(',')
			}
			writeJSONString(w, name)
		}
		w.WriteByte(']')
	}
	w.WriteString("}\n")
}

// writeJSONString writes s as a JSON string; invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func writeJSONString(w *bufio.Writer, s string) {
	const hex = "0123456789abcdef"
	w.WriteByte('"')
	// The common case, an address or a breach name of printable ASCII
	// only, is one table lookup a byte and one copy.
	plain := true
	for i := 0; i < len(s); i++ {
		plain = plain && jsonPlain[s[i]]
	}
	if plain {
		w.WriteString(s)
		w.WriteByte('"')
		return
	}
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			w.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				w.WriteByte('\\')
				w.WriteByte(c)
			case '\n':
				w.WriteString(`\n`)
			case '\r':
				w.WriteString(`\r`)
			case '\t':
				w.WriteString(`\t`)
			default:
				w.WriteString(`\u00`)
				w.WriteByte(hex[c>>4])
				w.WriteByte(hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			w.WriteString(s[start:i])
			w.WriteString(`\ufffd`)
			i++
			start = i
			continue
		}
		i += size
	}
	w.WriteString(s[start:])
	w.WriteByte('"')
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
