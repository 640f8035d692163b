package dump

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
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
	first []firstRow // rows cut before the lines: read while detecting the format, or an over-long line skipped
	cut
}

// firstRow is a row a block holds before its lines: its line, or why it
// has none.
type firstRow struct {
	line         int64
	text, reject string
}

// Live reports whether the dump's blocks may be Stalled: it is read from a
// pipe or a terminal (Idle), not through a decompressor.
func (r *Reader) Live() bool { return r.idle != nil }

// Stalled reports whether the block was cut short because its input had
// nothing more to give at that moment (a live feed on a pipe, Idle): its
// rows should be answered now, not when more come.
func (b *Block) Stalled() bool { return b.stalled }

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
	b := &Block{}
	// Rows NewReader read while detecting the format, unless SkipRows
	// skipped them.
	for len(r.long) > 0 || r.peeked != nil {
		line, err := r.nextRow()
		if err == errLongLine {
			b.first = append(b.first, firstRow{line: r.longAt, reject: err.Error()})
			continue
		}
		b.first = append(b.first, firstRow{line: r.line, text: string(line)})
	}
	if len(b.first) > 0 && r.idle != nil && r.br.Buffered() == 0 && r.idle() {
		// A live feed paused right after the rows read while detecting
		// its format: they go now.
		b.stalled = true
		r.count(&b.cut)
		return b, nil
	}
	var err error
	b.cut, err = r.cut(size)
	if b.long > 0 {
		b.first = append(b.first, firstRow{line: b.long, reject: errLongLine.Error()})
	}
	switch {
	case err == io.EOF && len(b.first) == 0:
		return nil, io.EOF
	case err == io.EOF:
		return b, nil // the end, on the next call
	case err != nil:
		return b, fmt.Errorf("line %d: %w", b.line+int64(b.lines)+1, err)
	}
	return b, nil
}

// lines reads a dump's lines: one at a time (nextLine), or cut into runs of
// whole lines (cut) for other goroutines to parse.
type lines struct {
	br    *bufio.Reader
	line  int64  // number of the last line read or cut, from 1
	carry []byte // the start of a line after the last cut
	// The line after the last cut is over-long, and the rest of it is
	// still to be skipped.
	skipLong bool
	eof      bool // a cut met the end of the dump
	// idle, if set, reports that a read of the input now would wait (a
	// pipe or terminal with nothing more in it: Idle): a cut then ends at
	// the whole lines it has, rather than wait to fill its size.
	idle func() bool
}

// Idle is implemented by inputs that can tell that a read would wait for
// more (Open and Stdin's pipes and terminals): the blocks of a live feed
// are cut when it pauses, not when they are full.
type Idle interface {
	Idle() bool
}

// A cut is a run of whole lines.
type cut struct {
	text  []byte // whole lines; the last may lack its line ending at the end of the dump
	line  int64  // the number of the line before text's first
	lines int    // text's line endings
	long  int64  // if not 0, the number of an over-long line, before text, skipped
	// stalled: cut short, the input idle (lines.idle)
	stalled bool
}

// cut returns the next run of whole lines, about size bytes of them (a line
// longer than size makes a longer run), or io.EOF at the end. A line longer
// than MaxLineBytes is skipped, and its number returned before the lines
// after it. A read error ends the dump: the whole lines before it come with
// it.
func (l *lines) cut(size int) (cut, error) {
	var c cut
	if l.skipLong {
		l.skipLong = false
		l.line++
		c.long = l.line
		if err := l.skipLine(); err != nil {
			c.line = l.line
			return c, err
		}
	}
	for !l.eof && !l.skipLong && len(c.text) == 0 {
		// Read on from the start of the line the last cut left: at least
		// size bytes, and as much again as that start while no line
		// ending is found, so that an over-long line costs log(its
		// length) reads, however small size is.
		buf := textBuf(len(l.carry) + max(size, len(l.carry), 1))
		n := copy(buf, l.carry)
		m, err := l.fill(buf, n)
		c.stalled = err == nil && n+m < len(buf)
		buf = buf[:n+m]
		switch {
		case err == io.EOF:
			l.eof, l.carry, c.text = true, nil, buf
		case err != nil:
			l.eof, l.carry = true, nil
			c.text = buf[:bytes.LastIndexByte(buf, '\n')+1]
			l.count(&c)
			return c, err
		default:
			end := bytes.LastIndexByte(buf, '\n') + 1
			// The carry is copied out: the text's buffer is recycled
			// once parsed, on another goroutine.
			c.text, l.carry = buf[:end], append(l.carry[:0], buf[end:]...)
			if len(l.carry) > MaxLineBytes {
				// Already too long: skip the rest of it on the next call,
				// after these lines.
				l.carry, l.skipLong = nil, true
			}
		}
	}
	l.count(&c)
	if c.long == 0 && len(c.text) == 0 {
		if l.skipLong {
			return l.cut(size) // it starts with the over-long line
		}
		return c, io.EOF
	}
	return c, nil
}

// fill reads into buf[from:], all of it unless the text ends first
// (io.EOF), a read fails, or the input is idle once buf holds a whole line
// (a live feed's pause). It returns how many bytes it read.
func (l *lines) fill(buf []byte, from int) (int, error) {
	if l.idle == nil {
		return fill(l.br, buf[from:])
	}
	n, whole := from, false
	for n < len(buf) {
		m, err := l.br.Read(buf[n:])
		whole = whole || bytes.IndexByte(buf[n:n+m], '\n') >= 0
		n += m
		if err != nil {
			return n - from, err
		}
		if whole && l.br.Buffered() == 0 && l.idle() {
			break // a live feed's pause: its whole lines go now
		}
	}
	return n - from, nil
}

// fill reads into all of buf, unless the text ends first (io.EOF) or a
// read fails. Not io.ReadFull: its io.ErrUnexpectedEOF for a short text
// would hide a truncated gzip stream's own.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// texts recycles cuts' texts once parsed: a dump is read through a few
// blocks' worth of memory, not as much garbage as its size.
var texts sync.Pool

// textBuf returns a buffer of n bytes, recycled if one is at hand.
func textBuf(n int) []byte {
	if b, ok := texts.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

// release hands c's text back for another cut: nothing refers to it any
// more.
func (c *cut) release() {
	if cap(c.text) > 0 {
		t := c.text[:0]
		texts.Put(&t)
	}
	c.text = nil
}

// count numbers c's lines, and moves past them.
func (l *lines) count(c *cut) {
	c.line, c.lines = l.line, bytes.Count(c.text, []byte{'\n'})
	l.line += int64(c.lines)
	if len(c.text) > 0 && c.text[len(c.text)-1] != '\n' {
		l.line++ // the dump's last line, without its ending
	}
}

// skipLine reads to the end of the line it is in.
func (l *lines) skipLine() error {
	for {
		_, err := l.br.ReadSlice('\n')
		switch err {
		case nil:
			return nil
		case io.EOF:
			l.eof = true
			return nil
		case bufio.ErrBufferFull:
			continue
		}
		l.eof = true
		return err
	}
}

// Rows appends b's rows to dst. It reads only what NewReader decided, so
// other goroutines may call it while ReadBlock reads on. The rows' values
// are substrings of one copy of the block's text.
func (r *Reader) Rows(b *Block, dst []Row) []Row {
	var fields []string
	eachLine(b, func(line int64, text, reject string) {
		row := Row{Line: line, Reject: reject}
		if reject == "" {
			row.Value, fields, row.Reject = r.field(text, fields[:0])
		}
		dst = append(dst, row)
	})
	return dst
}

// eachLine calls fn with each of b's rows, in order: its number and line,
// without its line ending, or why it has none (an over-long line). The
// lines are substrings of one copy of the block's text, whose buffer goes
// back for another block.
func eachLine(b *Block, fn func(line int64, text, reject string)) {
	for _, f := range b.first {
		fn(f.line, f.text, f.reject)
	}
	text := string(b.text)
	b.release()
	line := b.line
	for len(text) > 0 {
		var l string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			l, text = text[:i+1], text[i+1:]
		} else {
			l, text = text, ""
		}
		line++
		if len(l) > MaxLineBytes {
			fn(line, "", errLongLine.Error())
			continue
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.TrimSpace(l) == "" {
			continue
		}
		fn(line, l, "")
	}
}

// SkipRows reads past the next n rows, as a resumed run does past the rows
// it already reported; fewer if the dump ends first.
func (r *Reader) SkipRows(n int64) error {
	for ; n > 0; n-- {
		_, err := r.nextRow()
		switch {
		case err == io.EOF:
			return nil
		case err != nil && err != errLongLine:
			return err
		}
	}
	return nil
}
