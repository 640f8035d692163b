package dump

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	xunicode "golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// What a dump's bytes are, before its rows: compressed (gzip, zstd, bzip2,
// xz), not text at all (an archive, a document: refused), UTF-16, or
// lines ended by a carriage return alone. Each is told from the first
// bytes, never waiting for more than a live feed's first read brings.

// decompress returns br, or a reader of the text it holds compressed:
// gzip, zstd, bzip2 or xz, told by their magic numbers. Input that is an
// archive or a document rather than text, before or after decompression,
// is refused with ErrNotText, saying what to do: read as text its bytes
// would be rows all invalid, or worse, a CSV header and rows read from
// inside a tar's blocks.
func decompress(br *bufio.Reader) (*bufio.Reader, error) {
	switch {
	case startsWith(br, "\x1f\x8b"):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, 256<<10)
	case startsWith(br, "\x28\xb5\x2f\xfd"):
		// One decoder, in step with the reads: no goroutines of its
		// own, so nothing to close.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		br = bufio.NewReaderSize(zr, 256<<10)
	case startsWith(br, "BZh") && isBzip2(br):
		br = bufio.NewReaderSize(bzip2.NewReader(br), 256<<10)
	case startsWith(br, "\xfd7zXZ\x00"):
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		br = bufio.NewReaderSize(zr, 256<<10)
	}
	for _, n := range notText {
		if startsWith(br, n.magic) {
			return nil, fmt.Errorf("%w: the input is %s", ErrNotText, n.what)
		}
	}
	// A tar's magic is at byte 257: looked for only in what the first
	// read brought, so a live feed's first line is never held back.
	if head, _ := br.Peek(br.Buffered()); len(head) >= 262 && string(head[257:262]) == "ustar" {
		return nil, fmt.Errorf("%w: the input is a tar archive: extract it (tar -xf), or pipe one file of it (tar -xOf ARCHIVE FILE | ... -)", ErrNotText)
	}
	return br, nil
}

// notText are the magic numbers of inputs that are not text, and what to
// do with each.
var notText = []struct{ magic, what string }{
	{"PK\x03\x04", "a ZIP archive (an .xlsx spreadsheet?): export it as CSV, or unzip it"},
	{"7z\xbc\xaf\x27\x1c", "a 7-Zip archive: extract it (7z x), or pipe one file of it (7z e -so ARCHIVE FILE | ... -)"},
	{"Rar!\x1a\x07", "a RAR archive: extract it"},
	{"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls) or another Office document: export it as CSV"},
	{"%PDF-", "a PDF document: export its table as CSV"},
}

// startsWith reports whether br's input starts with magic. It waits for
// more input only while what has come so far could still be magic's start,
// so a live feed's first line, shorter than a magic number, is not held
// back.
func startsWith(br *bufio.Reader, magic string) bool {
	br.Peek(1) // one read, if none has been
	head, _ := br.Peek(min(len(magic), br.Buffered()))
	if !strings.HasPrefix(magic, string(head)) {
		return false
	}
	head, _ = br.Peek(len(magic))
	return string(head) == magic
}

// isBzip2 reports whether br, which starts with "BZh", is a bzip2 stream:
// a block size digit, then a block's or the end's magic.
func isBzip2(br *bufio.Reader) bool {
	head, _ := br.Peek(10)
	return len(head) == 10 && '1' <= head[3] && head[3] <= '9' &&
		(string(head[4:]) == "\x31\x41\x59\x26\x53\x59" || string(head[4:]) == "\x17\x72\x45\x38\x50\x90")
}

// text returns br read as text, whoever saved it: UTF-16 (by its mark)
// made UTF-8, a UTF-8 byte order mark (Notepad's) dropped, and lines ended
// by a carriage return alone made to end in a line feed. A first line,
// the first password or the CSV header, is never read with the mark.
func text(br *bufio.Reader) *bufio.Reader {
	br = fromUTF16(br)
	if startsWith(br, "\xef\xbb\xbf") {
		br.Discard(3)
	}
	return fromClassicMac(br)
}

// fromUTF16 returns br, or a reader of its text in UTF-8 if it starts with
// a UTF-16 byte order mark: a spreadsheet's "Unicode text" export (tab-
// separated UTF-16), which would otherwise be read as bytes with a NUL
// between each two, no row valid.
func fromUTF16(br *bufio.Reader) *bufio.Reader {
	if !startsWith(br, "\xff\xfe") && !startsWith(br, "\xfe\xff") {
		return br
	}
	dec := xunicode.UTF16(xunicode.LittleEndian, xunicode.ExpectBOM).NewDecoder()
	return bufio.NewReaderSize(transform.NewReader(br, dec), 256<<10)
}

// fromClassicMac returns br, or a reader of its text with each carriage
// return made a line feed if its lines end in a carriage return alone:
// Excel for Mac's "Macintosh Comma Separated" export, which would
// otherwise be read as one line, one invalid row. It looks only at what
// the first read brought (never waiting for more: a live feed's first line
// may be all there is), and decides there: a carriage return followed by
// anything but a line feed, and no line feed.
func fromClassicMac(br *bufio.Reader) *bufio.Reader {
	if _, err := br.Peek(1); err != nil {
		return br
	}
	head, _ := br.Peek(br.Buffered())
	if bytes.IndexByte(head, '\n') >= 0 {
		return br
	}
	i := bytes.IndexByte(head, '\r')
	if i < 0 || i == len(head)-1 {
		return br // no carriage return, or one a line feed may follow
	}
	return bufio.NewReaderSize(crLines{br}, 256<<10)
}

// crLines reads r with each carriage return made a line feed.
type crLines struct{ r io.Reader }

func (c crLines) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for b := p[:n]; ; {
		i := bytes.IndexByte(b, '\r')
		if i < 0 {
			break
		}
		b[i] = '\n'
		b = b[i+1:]
	}
	return n, err
}

// FirstLine returns the first line of r, a small text file such as one
// holding a password, decoded as the readers of dumps decode: a UTF-8 byte
// order mark dropped, UTF-16 (by its mark) made UTF-8, and the line ended
// by LF, CRLF or CR, which is not returned. A password file saved by
// Notepad starts with the mark, one written by Windows PowerShell 5 is
// UTF-16: hashed as bytes, either is a password no corpus holds.
func FirstLine(r io.Reader) (string, error) {
	line, err := text(bufio.NewReader(r)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		line = line[:i]
	}
	return line, nil
}
