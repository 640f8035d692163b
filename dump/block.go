package dump

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Row is one data row of a dump: the field that holds the account (the email
// or hex digest) exactly as written, or why the row has none.
type Row struct {
	Line   int64
	Value  string
	Reject string // set when the row is malformed (bad CSV, missing column, too long)
}

// A Block is a run of whole lines of a dump, cut by ReadBlock so that other
// goroutines can turn them into rows (Rows) while the next is read: a bulk
// checker parses on every core, in order.
type Block struct {
	first []Row  // rows cut before text: read while detecting the format, or an over-long line skipped
	text  []byte // whole lines; the last may lack its line ending at the end of the dump
	line  int64  // the number of the line before text's first
	lines int    // text's line endings
}

// Lines returns about how many rows the block holds, at most: for sizing
// what Rows appends to.
func (b *Block) Lines() int { return len(b.first) + b.lines + 1 }

// ReadBlock returns the next block: whole lines, about size bytes of them (a
// line longer than size makes a longer block). It returns io.EOF, and no
// block, at the end of the dump. A read error ends the dump: it returns the
// block of the whole lines before it with the error.
//
// Its blocks hold the rows Read would read, with the same line numbers and
// malformed rows, but unparsed and uncounted (Stats). Do not mix it with
// Read.
func (r *Reader) ReadBlock(size int) (*Block, error) {
	size = max(size, 1)
	b := &Block{}
	// Rows NewReader read while detecting the format, unless SkipRows
	// skipped them.
	for len(r.long) > 0 || r.peeked != nil {
		line, err := r.nextRow()
		if err == errLongLine {
			b.first = append(b.first, Row{Line: r.longAt, Reject: err.Error()})
			continue
		}
		row := Row{Line: r.line}
		row.Value, _, row.Reject = r.field(string(line), nil)
		b.first = append(b.first, row)
	}
	if r.skipLong {
		r.skipLong = false
		r.line++
		b.first = append(b.first, Row{Line: r.line, Reject: errLongLine.Error()})
		if err := r.skipLine(); err != nil {
			return b, fmt.Errorf("line %d: %w", r.line, err)
		}
	}
	for !r.eof && !r.skipLong && len(b.text) == 0 {
		// Read on from the start of the line the last block cut: at least
		// size bytes, and as much again as that start while no line
		// ending is found, so that an over-long line costs log(its
		// length) reads, however small size is.
		buf := make([]byte, len(r.carry)+max(size, len(r.carry)))
		n := copy(buf, r.carry)
		m, err := io.ReadFull(r.br, buf[n:])
		buf = buf[:n+m]
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			r.eof, r.carry, b.text = true, nil, buf
		case err != nil:
			r.eof, r.carry = true, nil
			b.text = buf[:bytes.LastIndexByte(buf, '\n')+1]
			r.count(b)
			return b, fmt.Errorf("line %d: %w", r.line+1, err)
		default:
			cut := bytes.LastIndexByte(buf, '\n') + 1
			b.text, r.carry = buf[:cut], buf[cut:]
			if len(r.carry) > MaxLineBytes {
				// Already too long: skip the rest of it on the next call,
				// after this block's lines.
				r.carry, r.skipLong = nil, true
			}
		}
	}
	r.count(b)
	if len(b.first) == 0 && len(b.text) == 0 {
		if r.skipLong {
			return r.ReadBlock(size) // it starts with the over-long line
		}
		return nil, io.EOF
	}
	return b, nil
}

// count numbers b's lines from the reader's, and moves it past them.
func (r *Reader) count(b *Block) {
	b.line, b.lines = r.line, bytes.Count(b.text, []byte{'\n'})
	r.line += int64(b.lines)
	if len(b.text) > 0 && b.text[len(b.text)-1] != '\n' {
		r.line++ // the dump's last line, without its ending
	}
}

// skipLine reads to the end of the line it is in.
func (r *Reader) skipLine() error {
	for {
		_, err := r.br.ReadSlice('\n')
		switch err {
		case nil:
			return nil
		case io.EOF:
			r.eof = true
			return nil
		case bufio.ErrBufferFull:
			continue
		}
		r.eof = true
		return err
	}
}

// Rows appends b's rows to dst. It reads only what NewReader decided, so
// other goroutines may call it while ReadBlock reads on. The rows' values
// are substrings of one copy of the block's text.
func (r *Reader) Rows(b *Block, dst []Row) []Row {
	dst = append(dst, b.first...)
	text := string(b.text)
	line := b.line
	var fields []string
	for len(text) > 0 {
		var l string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			l, text = text[:i+1], text[i+1:]
		} else {
			l, text = text, ""
		}
		line++
		if len(l) > MaxLineBytes {
			dst = append(dst, Row{Line: line, Reject: errLongLine.Error()})
			continue
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.TrimSpace(l) == "" {
			continue
		}
		row := Row{Line: line}
		row.Value, fields, row.Reject = r.field(l, fields[:0])
		dst = append(dst, row)
	}
	return dst
}

// SkipRows reads past the next n rows, as a resumed run does past the rows
// it already reported; fewer if the dump ends first.
func (r *Reader) SkipRows(n int64) error {
	for ; n > 0; n-- {
		_, err := r.nextRow()
		switch {
		case err == io.EOF:
			r.eof = true
			return nil
		case err != nil && err != errLongLine:
			return err
		}
	}
	return nil
}
