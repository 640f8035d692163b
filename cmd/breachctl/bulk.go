package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/dump"
)

type bulkConfig struct {
	file          string
	column        string
	digests       bool
	out           string
	format        string
	onlyExposed   bool
	resume        bool
	failOnExposed bool
	failOnInvalid bool
	maxInvalid    float64 // the share of invalid rows above which the run fails
	private       bool    // private checks (client.CheckPrivateDigests)
	batch         int
	inFlight      int
	// assess asks the daemon's policy about every row (unary Assess, in
	// context at, from inFlight*8 callers) instead of only checking it.
	assess bool
	at     breachd.AssessContext
}

// counters are the run's totals; they survive a resume in the checkpoint.
type counters struct {
	Rows    int64 `json:"rows"`    // input rows done (written or skipped)
	Exposed int64 `json:"exposed"` // rows found exposed
	Invalid int64 `json:"invalid"` // rows that could not be checked
}

// chunk is a run of consecutive input rows, parsed and hashed by a worker.
type chunk struct {
	seq     int64       // its place in the input, from 0
	block   *dump.Block // its lines, until a worker parses them into rows
	rows    []dump.Row
	digests []breachd.Digest // of the rows with one (Reject == ""), in order
	// lastValid is the index of the last row with a digest, -1 if none.
	lastValid int
	// stalled: the input paused after the chunk (a live feed,
	// dump.Block.Stalled): its answers are asked for and its rows written
	// out at once, not when more rows come.
	stalled bool
	done    chan struct{} // closed when hashed
	// The rows' heads in the report (rowWriter.head); nil with
	// --only-exposed, which writes few rows.
	heads *headBuf
}

// headBuf is a chunk's rows' heads, back to back: row i's ends at
// ends[i]. Recycled through headBufs: a sweep's chunks otherwise allocate
// 64 bytes a row, which cost more in GC than rendering the heads saved the
// writer.
type headBuf struct {
	text []byte
	ends []int32
}

var headBufs sync.Pool

// release hands the chunk's heads back for another chunk: the writer is
// done with them.
func (ch *chunk) release() {
	if ch.heads != nil {
		headBufs.Put(ch.heads)
		ch.heads = nil
	}
}

// head returns row i's head, or nil if the chunk has none.
func (ch *chunk) head(i int) []byte {
	h := ch.heads
	if h == nil {
		return nil
	}
	start := int32(0)
	if i > 0 {
		start = h.ends[i-1]
	}
	return h.text[start:h.ends[i]]
}

// blockBytes is about how much of the input a chunk holds: 8,000 rows of
// a list of addresses.
const blockBytes = 256 << 10

// checkpointEvery is how often a resumable run records its progress.
var checkpointEvery = time.Second

// dumpOptions says how the input file is read.
func (c bulkConfig) dumpOptions() dump.Options {
	opts := dump.Options{Column: c.column}
	if c.digests {
		opts.Format = dump.FormatSHA256
	}
	return opts
}

// bulkCheck checks every row of the input and writes a report.
func bulkCheck(ctx context.Context, c bulkConfig, cl *client.Client, stdout, stderr io.Writer, tty bool) error {
	start := time.Now()
	in, size, err := dump.Open(ctx, c.file)
	if err != nil {
		return err
	}
	defer in.Close()
	countIn := &countingReader{r: in}
	rd, err := dump.NewReader(countIn, c.dumpOptions())
	if err != nil {
		if ctx.Err() != nil { // interrupted while it waited for the first rows
			return bulkError(ctx.Err(), c)
		}
		return fmt.Errorf("%s: %w", c.file, err)
	}
	rw, err := newRowWriter(c.format, c.assess, c.out == "-" && isTerminal(stdout))
	if err != nil {
		return err
	}

	out, err := openOutput(ctx, c, size, stdout)
	if err != nil {
		return err
	}
	defer out.close()
	tot := out.resumed
	skip := tot.Rows
	if skip > 0 {
		fmt.Fprintf(stderr, "breachctl: resuming at input row %d\n", skip+1)
	} else {
		rw.header(out.w)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: stops every stage on an early return

	// Stage 1: cut the input into chunks of whole lines, in order.
	toHash := make(chan *chunk, 2*runtime.GOMAXPROCS(0))
	ordered := make(chan *chunk, 4*runtime.GOMAXPROCS(0))
	readErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(toHash)
		defer close(ordered)
		stage(ctx, "read")
		readErr <- readChunks(ctx, rd, skip, toHash, ordered)
	}()
	// Stage 2: parse, canonicalise, hash and render the rows' heads in
	// parallel.
	heads := rw
	if c.onlyExposed {
		heads = nil
	}
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stage(ctx, "hash")
			for ch := range toHash {
				hashChunk(rd, ch, c.digests, heads)
			}
		}()
	}
	// Stage 3: hand each hashed chunk, in order, to the writer (through an
	// unbounded queue, so this never waits for it) and then to the stream;
	// a stalled one is then marked for the writer (a live feed's).
	stalls := &stallMark{wake: make(chan struct{}, 1)}
	fed := make(chan *chunk)
	toStream := make(chan *chunk, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(fed)
		defer close(toStream)
		stage(ctx, "order")
		for ch := range ordered {
			<-ch.done
			for _, q := range []chan<- *chunk{fed, toStream} {
				select {
				case q <- ch:
				case <-ctx.Done():
					return
				}
			}
			if ch.stalled {
				stalls.mark(ch)
			}
		}
	}()
	queue := make(chan *chunk)
	go func() {
		defer wg.Done()
		stage(ctx, "order")
		forward(ctx, fed, queue)
	}()
	// The digests go to the stream a chunk's run at a time; a stalled
	// chunk's run is sent at once (Flush).
	runs := func(yield func(client.DigestRun) bool) {
		stage(ctx, "send") // on the client's goroutine that sends them
		for ch := range toStream {
			if (len(ch.digests) > 0 || ch.stalled) && !yield(client.DigestRun{Digests: ch.digests, Flush: ch.stalled}) {
				return
			}
		}
	}
	digests := func(yield func(breachd.Digest) bool) {
		for run := range runs {
			for _, d := range run.Digests {
				if !yield(d) {
					return
				}
			}
		}
	}

	// Progress, on a terminal only.
	var done atomic.Int64
	var exposed atomic.Int64
	if tty {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progress(ctx, stderr, start, &done, &exposed, countIn, size)
		}()
	}

	// Stage 4: pair answers with rows, in order, and write the report
	// (report.run).
	answers := func(yield func(answer, error) bool) {
		check := cl.CheckDigestRuns(ctx, runs)
		if c.private {
			check = cl.CheckPrivateDigests(ctx, digests)
		}
		for r, err := range check {
			if !yield(answer{BulkResult: r}, err) {
				return
			}
		}
	}
	if c.assess {
		answers = assessed(ctx, cl, digests, c.at, 8*c.inFlight)
	}
	stage(ctx, "write") // this goroutine, and the client's it starts (but "send")
	rep := &report{c: c, out: out, rw: rw, queue: queue, tot: tot, version: out.resumedVersion, lastCheckpoint: time.Now(), done: &done, exposed: &exposed}
	if rd.Live() {
		// A pipe or a FIFO: a live feed may pause after rows that need no
		// answer (invalid ones), which no answer would then bring out.
		rep.stalls = stalls
	}
	if err := rep.run(ctx, answers); err != nil {
		if ctx.Err() != nil { // interrupted: say so, not how the stream ended
			return bulkError(ctx.Err(), c)
		}
		return err
	}
	tot, version := rep.tot, rep.version
	if err := <-readErr; err != nil {
		return fmt.Errorf("%s: %w", c.file, err)
	}
	if err := out.finish(); err != nil {
		if ctx.Err() != nil { // a pipe's writes end when interrupted
			return bulkError(ctx.Err(), c)
		}
		return err
	}
	cancel()
	elapsed := time.Since(start)
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	fmt.Fprintf(stderr, "checked %d rows: %d exposed, %d invalid, in %s (%d rows/s)",
		tot.Rows, tot.Exposed, tot.Invalid, elapsed.Round(time.Millisecond), int64(float64(tot.Rows-skip)/elapsed.Seconds()))
	if tot.Invalid < tot.Rows { // some row was answered
		fmt.Fprintf(stderr, ", corpus version %d", version)
	}
	fmt.Fprintln(stderr)
	if err := c.checkInvalid(tot.Rows, tot.Invalid); err != nil {
		return err
	}
	if c.failOnExposed && tot.Exposed > 0 {
		return errExposed
	}
	return nil
}

// report is the writer stage: it pairs answers with rows, in order, writes
// the report and checkpoints it. Each answer's row is in the queue already
// (a chunk reaches the writer's queue before its digests reach the
// stream); the rows without a digest before it are written on the way.
type report struct {
	c              bulkConfig
	out            *output
	rw             rowWriter
	queue          <-chan *chunk
	tot            counters
	version        uint64
	lastCheckpoint time.Time
	done, exposed  *atomic.Int64 // progress
	cur            *chunk        // the chunk being written, and its next row
	next           int
	row            outRow
	// A live feed's (run): its pauses, and while watchStalls runs, the
	// lock it and the writer take turns under, the chunk it last paused
	// after whose rows are not all written, and catchUp's error.
	stalls  *stallMark
	mu      sync.Mutex
	stallAt *chunk
	err     error
}

// stallMark tells the writer which chunk a live feed last paused after.
type stallMark struct {
	latest atomic.Pointer[chunk]
	wake   chan struct{} // one pending wake-up at most
}

func (s *stallMark) mark(ch *chunk) {
	s.latest.Store(ch)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// catchUp writes the rows that need no answer, from the next one to the
// end of r.stallAt, a chunk the feed paused after, and flushes the report;
// r.stallAt is then nil. It stops at the first row that waits for an
// answer (its answer writes it, and the rest then), so rows still go out
// in order and a checkpoint still covers only rows written. Chunks up to
// r.stallAt are in the queue already (it was marked after it went there).
// Under r.mu.
func (r *report) catchUp(ctx context.Context) error {
	target := r.stallAt
	if target == nil {
		return nil
	}
	if r.cur != nil && (r.cur.seq > target.seq || r.cur == target && r.next == len(r.cur.rows)) {
		r.stallAt = nil // written
		return nil
	}
	for {
		if r.cur == nil || r.next == len(r.cur.rows) {
			if r.cur == target {
				break
			}
			if r.cur != nil {
				r.cur.release()
				r.cur = nil // written: rowsUpTo takes the next one
				if err := r.endChunk(); err != nil {
					return err
				}
			}
			var ok bool
			select {
			case r.cur, ok = <-r.queue:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !ok {
				r.cur = nil
				return nil
			}
			r.next = 0
			continue
		}
		if r.cur.rows[r.next].Reject == "" {
			return nil
		}
		r.write(r.next, nil)
		r.next++
	}
	r.stallAt = nil
	r.out.w.Flush() // a write error stays in the writer, for the report's end
	return nil
}

// run writes the report of answers, which it ranges over (pushed, not
// pulled one by one: a pull is a coroutine switch a row). A checkpoint
// covers every row before it: the run stops at the first row with a digest
// that has no answer, before any later row is written or counted. (It
// once went on, after a cancelled stream ended without an error, writing
// the next rows without a digest and checkpointing them: a resumed report
// then held those rows twice and lacked the ones passed over.)
func (r *report) run(ctx context.Context, answers iter.Seq2[answer, error]) error {
	stop := func() {}
	if r.stalls != nil {
		stop = r.watchStalls(ctx)
		defer stop()
	}
	for a, err := range answers {
		if err != nil {
			return bulkError(err, r.c)
		}
		if r.stalls == nil {
			if err := r.answer(&a); err != nil {
				return err
			}
			continue
		}
		r.mu.Lock()
		err = r.answer(&a)
		if err == nil && r.stallAt != nil {
			err = r.catchUp(ctx) // a pause after rows that waited for this answer
		}
		if err == nil {
			err = r.err
		}
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	stop() // the rest is the writer's alone
	if r.err != nil {
		return r.err
	}
	// The rows after the last answer can only be rows without a digest.
	i, err := r.rowsUpTo()
	switch {
	case err != nil:
		return err
	case ctx.Err() != nil:
		return bulkError(ctx.Err(), r.c)
	case i >= 0:
		return fmt.Errorf("the daemon's answers ended early")
	}
	return nil
}

// answer writes the rows up to a's, and a's.
func (r *report) answer(a *answer) error {
	i, err := r.rowsUpTo()
	if err != nil {
		return err
	}
	if i < 0 {
		return fmt.Errorf("the daemon answered more digests than were sent")
	}
	r.write(i, a)
	if r.cur.stalled && i == r.cur.lastValid {
		// A live feed paused after this chunk: its last rows, and the
		// report so far, go out now. A write error stays in the writer,
		// for the report's end.
		for ; r.next < len(r.cur.rows); r.next++ {
			r.write(r.next, nil)
		}
		r.out.w.Flush()
	}
	return nil
}

// watchStalls writes, from a goroutine of its own until stop is called,
// the rows that need no answer up to each pause of a live feed
// (catchUp): no answer would bring them out, when a pause follows rows
// all invalid. It and the writer take turns under r.mu: the writer an
// answer at a time (an uncontended lock; a hand-off of the answers to
// another goroutine cost the sweep a fifth more CPU).
func (r *report) watchStalls(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.stalls.wake:
			}
			r.mu.Lock()
			if t := r.stalls.latest.Load(); r.stallAt == nil || t.seq > r.stallAt.seq {
				r.stallAt = t
			}
			if err := r.catchUp(ctx); err != nil && r.err == nil && ctx.Err() == nil {
				r.err = err
			}
			r.mu.Unlock()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}

// endChunk records a written chunk's progress.
func (r *report) endChunk() error {
	r.done.Store(r.tot.Rows)
	r.exposed.Store(r.tot.Exposed)
	if r.c.resume && time.Since(r.lastCheckpoint) > checkpointEvery {
		if err := r.out.checkpoint(r.tot, r.version); err != nil {
			return err
		}
		r.lastCheckpoint = time.Now()
	}
	return nil
}

// write writes row i of cur, whose answer is a (nil for a row without a
// digest).
func (r *report) write(i int, a *answer) {
	in := &r.cur.rows[i]
	r.row = outRow{line: in.Line, value: in.Value, reason: in.Reject}
	row := &r.row
	if a != nil {
		r.version = a.CorpusVersion
		row.exposed, row.breaches = a.Exposed, a.BreachNames
		row.decision, row.wouldBe, row.reasons = a.decision, a.wouldBe, a.reasons
	}
	r.tot.Rows++
	switch {
	case row.reason != "":
		r.tot.Invalid++
	case row.exposed:
		r.tot.Exposed++
	}
	if r.c.onlyExposed && !row.exposed {
		return
	}
	w := r.out.w
	if h := r.cur.head(i); h != nil {
		w.Write(h)
	} else {
		w.Write(r.rw.head(w.AvailableBuffer(), row))
	}
	if row.reason == "" {
		w.Write(r.rw.tail(w.AvailableBuffer(), row))
	}
}

// rowsUpTo writes the rows without a digest up to the next row with one
// and returns its index in cur; -1 when the queue ended first.
func (r *report) rowsUpTo() (int, error) {
	for {
		if r.cur == nil || r.next == len(r.cur.rows) {
			if r.cur != nil {
				r.cur.release()
				if err := r.endChunk(); err != nil {
					return -1, err
				}
			}
			var ok bool
			if r.cur, ok = <-r.queue; !ok {
				return -1, nil
			}
			r.next = 0
		}
		i := r.next
		r.next++
		if r.cur.rows[i].Reject == "" {
			return i, nil
		}
		r.write(i, nil)
	}
}

var (
	errExposed = errors.New("exposed accounts found")
	errInvalid = errors.New("invalid rows")
)

// checkInvalid fails a run whose invalid rows say its input was misread:
// all of them (or no row at all), more than --max-invalid of them, or any
// with --fail-on-invalid. Its answer for the rest would not be one to trust.
func (c bulkConfig) checkInvalid(rows, invalid int64) error {
	hint := "is the input what you meant? A CSV needs a header naming the email column (--column); pass --digests for hex SHA-256 digests"
	switch {
	case c.file == "" && invalid == rows: // addresses on the command line, each one's reason printed
		return fmt.Errorf("%w: no address given is valid, so nothing was checked; each one's reason is above", errInvalid)
	case rows == 0:
		return fmt.Errorf("%w: the input has no rows; %s", errInvalid, hint)
	case invalid == rows:
		return fmt.Errorf("%w: every one of the %d rows is invalid, so nothing was checked; %s", errInvalid, rows, hint)
	case c.failOnInvalid && invalid > 0:
		return fmt.Errorf("%w: %d of %d rows are invalid (--fail-on-invalid)", errInvalid, invalid, rows)
	case float64(invalid) > c.maxInvalid*float64(rows):
		return fmt.Errorf("%w: %d of %d rows (%.1f%%) are invalid, more than --max-invalid %g; %s",
			errInvalid, invalid, rows, 100*float64(invalid)/float64(rows), c.maxInvalid, hint)
	}
	return nil
}

func bulkError(err error, c bulkConfig) error {
	if c.resume {
		return fmt.Errorf("%w\nrun the same command again to resume", err)
	}
	return err
}

// readChunks cuts the input into chunks, after the rows an earlier run
// reported, and hands each to a hashing worker and to the ordering stage.
func readChunks(ctx context.Context, rd *dump.Reader, skip int64, toHash, ordered chan<- *chunk) error {
	if err := rd.SkipRows(skip); err != nil {
		return err
	}
	for seq := int64(0); ; {
		b, err := rd.ReadBlock(blockBytes)
		if b != nil {
			ch := &chunk{seq: seq, block: b, done: make(chan struct{})}
			seq++
			for _, q := range []chan<- *chunk{toHash, ordered} {
				select {
				case q <- ch:
				case <-ctx.Done():
					return nil
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// hashChunk parses ch's lines into rows, computes their digests and, with a
// rowWriter, their heads in the report.
func hashChunk(rd *dump.Reader, ch *chunk, hexDigests bool, rw rowWriter) {
	ch.rows = rd.Rows(ch.block, make([]dump.Row, 0, ch.block.Lines()))
	ch.stalled, ch.block = ch.block.Stalled(), nil
	ch.digests, ch.lastValid = make([]breachd.Digest, 0, len(ch.rows)), -1
	var h *headBuf
	if rw != nil {
		h, _ = headBufs.Get().(*headBuf)
		if h == nil {
			h = &headBuf{text: make([]byte, 0, 2*blockBytes)}
		}
		h.text, h.ends = h.text[:0], slices.Grow(h.ends[:0], len(ch.rows))[:len(ch.rows)]
		ch.heads = h
	}
	var row outRow // one for the chunk: a pointer passed to an interface escapes
	for i := range ch.rows {
		r := &ch.rows[i]
		if r.Reject == "" {
			var d breachd.Digest
			var err error
			if hexDigests {
				d, err = breachd.ParseDigest(strings.TrimSpace(r.Value))
			} else {
				d, err = canon.Digest(r.Value)
			}
			if err != nil {
				r.Reject = err.Error()
			} else {
				ch.digests, ch.lastValid = append(ch.digests, d), i
			}
		}
		if h != nil {
			row.line, row.value, row.reason = r.Line, r.Value, r.Reject
			h.text = rw.head(h.text, &row)
			h.ends[i] = int32(len(h.text))
		}
	}
	close(ch.done)
}

// stage labels the calling goroutine's CPU profile samples with a stage of
// the sweep (go tool pprof -tags on a --cpu-profile): goroutines it starts
// inherit the label.
func stage(ctx context.Context, name string) {
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("stage", name)))
}

// forward passes chunks from in to out through an unbounded queue. The
// writer needs a chunk's rows before the answers for its digests arrive, and
// the stream only sends a batch once it is full, so the feeder must never
// wait for the writer. The queue holds the rows between the oldest
// unanswered digest and the newest one sent: the client's in-flight limit
// bounds it, plus any run of rows with no valid digest.
func forward(ctx context.Context, in <-chan *chunk, out chan<- *chunk) {
	defer close(out)
	var q []*chunk
	for in != nil || len(q) > 0 {
		var send chan<- *chunk
		var head *chunk
		if len(q) > 0 {
			send, head = out, q[0]
		}
		select {
		case ch, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			q = append(q, ch)
		case send <- head:
			q[0] = nil
			q = q[1:]
		case <-ctx.Done():
			return
		}
	}
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Idle passes on the input's dump.Idle: a live feed is cut at its pauses.
func (c *countingReader) Idle() bool {
	i, ok := c.r.(dump.Idle)
	return ok && i.Idle()
}

// progress redraws one status line on stderr until ctx is done.
func progress(ctx context.Context, w io.Writer, start time.Time, done, exposed *atomic.Int64, in *countingReader, size int64) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		el := time.Since(start).Seconds()
		rows := done.Load()
		line := fmt.Sprintf("\r\033[K%d rows  %d rows/s  %d exposed", rows, int64(float64(rows)/el), exposed.Load())
		if read := in.n.Load(); size > 0 && read > 0 {
			frac := min(float64(read)/float64(size), 1)
			eta := time.Duration(el * (1 - frac) / frac * float64(time.Second))
			line += fmt.Sprintf("  %3.0f%%  ETA %s", 100*frac, eta.Round(time.Second))
		}
		io.WriteString(w, line)
	}
}

// bufSize is the report writer's buffer.
const bufSize = 1 << 20

func newBuffered(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, bufSize) }

// answer is the daemon's answer for one row of a sweep: a check's, and
// with --assess the policy's decision.
type answer struct {
	client.BulkResult
	decision, wouldBe string
	reasons           []string
}

// assessed asks Assess about each digest, from callers goroutines at
// once, and yields the answers in input order.
func assessed(ctx context.Context, cl *client.Client, digests iter.Seq[breachd.Digest], at breachd.AssessContext, callers int) iter.Seq2[answer, error] {
	type job struct {
		d   breachd.Digest
		res chan answer
		err chan error
	}
	return func(yield func(answer, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		jobs, order := make(chan *job, callers), make(chan *job, 4*callers)
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel() // before Wait: every goroutine below stops
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(jobs)
			defer close(order)
			for d := range digests {
				j := &job{d: d, res: make(chan answer, 1), err: make(chan error, 1)}
				for _, q := range []chan *job{order, jobs} {
					select {
					case q <- j:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					a, err := cl.AssessDigest(ctx, j.d, nil, at)
					if err != nil {
						j.err <- err
						continue
					}
					names := make([]string, len(a.Breaches))
					for i, b := range a.Breaches {
						names[i] = b.Name
					}
					j.res <- answer{BulkResult: client.BulkResult{Exposed: len(names) > 0, BreachNames: names, CorpusVersion: a.CorpusVersion},
						decision: a.Decision.String(), wouldBe: a.WouldBe.String(), reasons: a.Reasons}
				}
			}()
		}
		for j := range order {
			select {
			case a := <-j.res:
				if !yield(a, nil) {
					return
				}
			case err := <-j.err:
				yield(answer{}, err)
				return
			case <-ctx.Done():
				yield(answer{}, ctx.Err())
				return
			}
		}
		if err := ctx.Err(); err != nil { // the producer stopped early
			yield(answer{}, err)
		}
	}
}
