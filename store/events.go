package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// Exposure events. After every change of the email corpus, Reconcile
// compares what the email corpus's catalogue holds with what the
// watchlist corpus has already seen of it, in the watchlist corpus's
// Badger under these keyspaces:
//
//	'd' seg(4)                          -> breach: an email segment whose diff is written
//	'x' len(wl) wl digest(32) seg(4)    -> breach: an account of wl that seg exposes
//	'o' seq(8)                          -> outbox event: len(wl) wl len(id) id body
//	'i' len(wl) wl seq(8)               -> (empty): wl's events, for paging
//	'c' endpoint                        -> seq(8): the last event an endpoint has had
//	'q' len(endpoint)(2) endpoint seq(8) -> DeadLetter (JSON)
//	'k' keyed(32)                       -> sealed digest (a keyed corpus's watchlists: watch.go)
//
// A committed email segment with no 'd' mark is new: the accounts of its
// rows that are on a watchlist (diff: its rows against the watch corpus's
// filter, then its rows) become "added" events and 'x' records, and the mark is written last. An
// 'x' record whose segment is no longer committed (its breach deleted)
// becomes a "removed" event, deleted in the same transaction. So a crash
// at any point loses no event: the next Reconcile (the daemon runs one at
// start) writes what is missing. An event written before a crash may be
// written again; its ID is a function of its content, so the repeat is
// recognisable. A watchlist sees the imports committed after it was
// created: segments marked before are not diffed again.
const (
	tagDiffed   = 'd'
	tagExposure = 'x'
	tagOutbox   = 'o'
	tagWLIndex  = 'i'
	tagCursor   = 'c'
	tagDead     = 'q'
)

var (
	keyEventSeq = []byte("mevent_seq")
	// keyPrunedUpto is the position of the newest event pruned.
	keyPrunedUpto = []byte("mevents_pruned_upto")
)

func wlPrefix(tag byte, wl string) []byte {
	return append([]byte{tag, byte(len(wl))}, wl...)
}

func exposureKey(wl string, d []byte, seg uint32) []byte {
	return binary.BigEndian.AppendUint32(append(wlPrefix(tagExposure, wl), d...), seg)
}

func seqKey(tag byte, prefix []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{tag}, prefix...), seq)
}

func outboxKey(seq uint64) []byte { return seqKey(tagOutbox, nil, seq) }

func wlIndexKey(wl string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(wlPrefix(tagWLIndex, wl), seq)
}

func diffedKey(seg uint32) []byte { return binary.BigEndian.AppendUint32([]byte{tagDiffed}, seg) }

// ReconcileStats counts what a Reconcile wrote.
type ReconcileStats struct {
	Segments       int    // email segments diffed
	Added, Removed uint64 // exposures
	Events         int
}

// groupKey names one event series: a watchlist, a breach, a segment of it.
type groupKey struct {
	wl, breach string
	seg        uint32
}

// group is the accounts of one event series.
type group struct {
	groupKey
	accounts [][]byte // digests, ascending
}

// groups collects accounts by event series.
type groups struct {
	by    map[groupKey]*group
	order []*group
}

func (gs *groups) add(k groupKey, d []byte) {
	if gs.by == nil {
		gs.by = map[groupKey]*group{}
	}
	g := gs.by[k]
	if g == nil {
		g = &group{groupKey: k}
		gs.by[k] = g
		gs.order = append(gs.order, g)
	}
	g.accounts = append(g.accounts, d)
}

// sorted returns the series ordered by watchlist, breach and segment.
func (gs *groups) sorted() []group {
	slices.SortFunc(gs.order, func(a, b *group) int {
		return cmp.Or(strings.Compare(a.wl, b.wl), strings.Compare(a.breach, b.breach), cmp.Compare(a.seg, b.seg))
	})
	out := make([]group, len(gs.order))
	for i, g := range gs.order {
		out[i] = *g
	}
	return out
}

// Reconcile writes the exposure events that the email corpus's committed
// state calls for and the outbox lacks (see above).
func (w *Watchlists) Reconcile(ctx context.Context) (ReconcileStats, error) {
	done, err := w.takeImportToken(ctx, "exposure reconciliation")
	if err != nil {
		return ReconcileStats{}, err
	}
	defer done()
	return w.reconcile(ctx)
}

// reconcile is Reconcile's work; callers hold the import token.
func (w *Watchlists) reconcile(ctx context.Context) (ReconcileStats, error) {
	start := time.Now()
	emails := w.emails
	if err := w.acquire(); err != nil {
		return ReconcileStats{}, err
	}
	defer w.release()
	if err := emails.acquire(); err != nil {
		return ReconcileStats{}, err
	}
	defer emails.release()
	var st ReconcileStats
	p, err := w.plan(ctx, emails)
	if err != nil {
		return st, err
	}
	ecat, marks, fresh, added, removed := p.ecat, p.marks, p.fresh, p.added, p.removed
	now := time.Now().UTC()
	for _, g := range added {
		st.Added += uint64(len(g.accounts))
	}
	for _, g := range removed {
		st.Removed += uint64(len(g.accounts))
	}
	// Removed first: each transaction reports whole events and deletes
	// their records, so what is left after a crash batches the same way.
	var evs []pendingEvent
	err = w.db.View(func(txn *badger.Txn) error {
		name := func(k []byte) ([]byte, error) { return w.account(txn, k) }
		rm, err := w.events(removed, breachd.EventExposureRemoved, ecat.version, now, name)
		if err != nil {
			return err
		}
		add, err := w.events(added, breachd.EventExposureAdded, ecat.version, now, name)
		evs = append(rm, add...)
		return err
	})
	if err != nil {
		return st, classify("reconcile", err)
	}
	if err := w.writeEvents(ctx, evs); err != nil {
		return st, err
	}
	st.Events = len(evs)
	if err := w.deleteKeys(p.orphans); err != nil {
		return st, err
	}
	err = w.db.Update(func(txn *badger.Txn) error {
		for seg, name := range fresh {
			if err := txn.Set(diffedKey(seg), []byte(name)); err != nil {
				return err
			}
		}
		for seg, name := range marks {
			if ecat.segNames[seg] != name {
				if err := txn.Delete(diffedKey(seg)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		err = w.db.Sync()
	}
	if err != nil {
		return st, classify("reconcile", err)
	}
	w.reach("reconcile-done")
	st.Segments = len(fresh)
	if st.Events > 0 || st.Segments > 0 {
		w.log.Info("exposures reconciled", "segments", st.Segments, "added", st.Added, "removed", st.Removed,
			"events", st.Events, "corpus_version", ecat.version, "duration", time.Since(start))
	}
	return st, nil
}

// reconcilePlan is what a reconcile writes, as of the email catalogue
// ecat.
type reconcilePlan struct {
	ecat           *catalog
	marks, fresh   map[uint32]string // segments diffed before; committed ones not yet diffed
	orphans        [][]byte          // exposure keys of deleted watchlists
	added, removed []group
}

// plan reads what reconcile is to write. The diff reads the rows of the
// fresh segments as they are, not as ecat has them: a delete that commits
// meanwhile, and the collection it hands off, could leave it some of a
// deleted breach's rows (their accounts would get no "added" event, nor
// the "removed" that the others get next time). So while a fresh segment
// has left the email catalogue by the end, plan starts again under the
// new one, as readStable does for lookups. Callers hold the import
// token, so the watch corpus's own catalogue cannot change.
func (w *Watchlists) plan(ctx context.Context, emails *Store) (reconcilePlan, error) {
	for {
		p := reconcilePlan{ecat: emails.cat.Load(), marks: map[uint32]string{}, fresh: map[uint32]string{}}
		w.reach("reconcile-at-catalogue")
		ecat, wcat := p.ecat, w.cat.Load()
		var gone groups // exposures whose segment is no longer committed
		err := w.db.View(func(txn *badger.Txn) error {
			if err := scan(txn, tagDiffed, func(k, v []byte) error {
				p.marks[binary.BigEndian.Uint32(k[1:])] = string(v)
				return nil
			}); err != nil {
				return err
			}
			return scan(txn, tagExposure, func(k, v []byte) error {
				wl, d, seg, err := parseExposure(k)
				if err != nil {
					return err
				}
				if ecat.segNames[seg] == string(v) && wcat.byName[wl] != nil {
					return nil
				}
				if wcat.byName[wl] == nil {
					p.orphans = append(p.orphans, slices.Clone(k)) // a deleted watchlist's: dropped, not reported
					return nil
				}
				gone.add(groupKey{wl: wl, breach: string(v), seg: seg}, slices.Clone(d))
				return nil
			})
		})
		if err != nil {
			return p, classify("reconcile", err)
		}
		for seg, name := range ecat.segNames {
			if p.marks[seg] != name {
				p.fresh[seg] = name
			}
		}
		p.removed = gone.sorted()
		if len(p.fresh) > 0 && len(wcat.byName) > 0 {
			if p.added, err = w.diff(ctx, emails, ecat, wcat, p.fresh); err != nil {
				return p, err
			}
		}
		if !p.freshGone(emails.cat.Load()) {
			return p, nil
		}
	}
}

// freshGone reports whether a fresh segment is no longer committed in cat.
// Only that makes a diff stale: an import committed meanwhile adds a
// segment the diff ignores and the next reconcile reads, and a delete of
// another segment changes none of the fresh segments' entries. (A retry
// on every change could go on for ever under a stream of imports.)
func (p *reconcilePlan) freshGone(cat *catalog) bool {
	for seg, name := range p.fresh {
		if cat.segNames[seg] != name {
			return true
		}
	}
	return false
}

func parseExposure(k []byte) (wl string, d []byte, seg uint32, err error) {
	if len(k) < 2 || len(k) != 2+int(k[1])+breachd.DigestSize+4 {
		return "", nil, 0, fmt.Errorf("%w: exposure key of %d bytes", ErrCorrupt, len(k))
	}
	n := 2 + int(k[1])
	return string(k[2:n]), k[n : n+breachd.DigestSize], binary.BigEndian.Uint32(k[n+breachd.DigestSize:]), nil
}

// diff finds the watched accounts of the fresh segments. It reads the
// email rows written since the oldest fresh segment began (Badger's
// SinceTs: only the new breach's rows and their neighbours in the tables
// they share, in digest order), keeps those that hold a fresh segment,
// tests each against the watch corpus's filter, and reads the watchlist
// row of only those the filter lets through. Its cost follows the new
// rows, not the watchlists: a breach of 1.29M rows against 10M watched
// accounts reads 1.29M rows and about as many filter words, where a merge
// of the two sorted corpora would read 11M rows.
func (w *Watchlists) diff(ctx context.Context, emails *Store, ecat, wcat *catalog, fresh map[uint32]string) ([]group, error) {
	etxn, wtxn := emails.snapshot(ecat), w.snapshot(wcat)
	defer etxn.Discard()
	defer wtxn.Discard()
	since, err := segmentsSince(etxn, fresh)
	if err != nil {
		return nil, classify("reconcile", err)
	}
	wf := w.filter.Load()
	ei := etxn.NewIterator(badger.IteratorOptions{Prefix: []byte{emails.kind.tag}, SinceTs: since})
	defer ei.Close()
	var found groups
	var segs []uint32
	var wls []*breachd.CatalogEntry
	p := emails.pacer()
	steps := 0
	for ei.Rewind(); ei.Valid(); ei.Next() {
		if steps++; steps%4096 == 0 {
			if err := p.step(ctx); err != nil {
				return nil, err
			}
		}
		ek := ei.Item().Key()
		if len(ek) != 1+breachd.DigestSize {
			return nil, fmt.Errorf("%w: email key of %d bytes", ErrCorrupt, len(ek))
		}
		if !wf.test(ek[1:]) {
			continue // on no watchlist
		}
		segs = segs[:0]
		if err := ei.Item().Value(func(v []byte) error {
			if !emails.kind.validValue(v) {
				return fmt.Errorf("%w: email row of %d bytes", ErrCorrupt, len(v))
			}
			for i := 0; i < len(v); i += emails.kind.entrySize() {
				if seg, _ := emails.kind.entry(v, i); fresh[seg] != "" {
					segs = append(segs, seg)
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
		if len(segs) == 0 {
			continue
		}
		on, err := w.get(wtxn, ek[1:], func(v []byte) (err error) {
			wls, err = wcat.resolve(wls[:0], v)
			return err
		})
		if err != nil {
			return nil, err
		}
		if !on {
			continue // the filter's false positive, or taken off
		}
		d := slices.Clone(ek[1:])
		for _, seg := range segs {
			for _, wl := range wls {
				found.add(groupKey{wl: wl.Name, breach: fresh[seg], seg: seg}, d)
			}
		}
	}
	return found.sorted(), nil
}

// segmentsSince returns a Badger version older than every row of the
// segments named: the oldest of their records' Since, or 0.
func segmentsSince(txn *badger.Txn, segs map[uint32]string) (uint64, error) {
	since := uint64(math.MaxUint64)
	for seg := range segs {
		item, err := txn.Get(segmentKey(seg))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		var r segmentRecord
		deleted := false
		err = item.Value(func(v []byte) error {
			deleted = len(v) == 0 // a deletion marker: as if not found
			if deleted {
				return nil
			}
			return json.Unmarshal(v, &r)
		})
		if err != nil {
			return 0, fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
		}
		if deleted {
			return 0, nil
		}
		since = min(since, r.Since)
	}
	if since == math.MaxUint64 {
		return 0, nil
	}
	return since, nil
}

// pendingEvent is an event to write, with the exposure records it adds
// (added) or deletes (removed) in the same transaction.
type pendingEvent struct {
	wl, id string
	body   []byte
	set    [][]byte // exposure keys to set, each to breach
	del    [][]byte
	breach string
}

// events cuts groups into events of at most breachd.MaxEventAccounts,
// naming each account by name (its digest, from the watch row's key).
func (w *Watchlists) events(groups []group, typ string, version uint64, now time.Time, name func([]byte) ([]byte, error)) ([]pendingEvent, error) {
	var out []pendingEvent
	for _, g := range groups {
		for part := range slices.Chunk(g.accounts, breachd.MaxEventAccounts) {
			h := sha256.New()
			fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00%x\x00%d", typ, g.wl, g.breach, g.seg, part[0], len(part))
			ev := breachd.Event{SpecVersion: "1.0", Type: typ, Source: "breachd", ID: hex.EncodeToString(h.Sum(nil)[:16]),
				Time: now, Subject: g.wl, DataContentType: "application/json",
				Data: breachd.EventData{Breach: g.breach, CorpusVersion: version, Accounts: make([]string, len(part))}}
			pe := pendingEvent{wl: g.wl, id: ev.ID, breach: g.breach}
			for i, d := range part {
				a, err := name(d)
				if err != nil {
					return nil, err
				}
				ev.Data.Accounts[i] = hex.EncodeToString(a)
				k := exposureKey(g.wl, d, g.seg)
				if typ == breachd.EventExposureAdded {
					pe.set = append(pe.set, k)
				} else {
					pe.del = append(pe.del, k)
				}
			}
			pe.body, _ = json.Marshal(ev) // plain fields: cannot fail
			out = append(out, pe)
		}
	}
	return out, nil
}

// writeEvents appends evs to the outbox, with their exposure records,
// whole events a transaction, as many as fit in half of Badger's batch.
func (w *Watchlists) writeEvents(ctx context.Context, evs []pendingEvent) error {
	budget, count := w.db.MaxBatchSize()/2, w.db.MaxBatchCount()/2
	for len(evs) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, size, entries := 0, int64(0), int64(0)
		for n < len(evs) {
			s, c := evs[n].cost()
			if n > 0 && (size+s > budget || entries+c > count) {
				break
			}
			size, entries = size+s, entries+c
			n++
		}
		if size > budget || entries > count {
			return fmt.Errorf("an event of %d bytes does not fit in a Badger transaction: raise the memtable size", size)
		}
		if err := w.writeTxn(evs[:n]); err != nil {
			return err
		}
		evs = evs[n:]
		w.reach("events-written")
	}
	return nil
}

// cost estimates the bytes and entries an event takes in a transaction
// (Badger's own estimate adds a few bytes of metadata an entry).
func (e *pendingEvent) cost() (int64, int64) {
	const perEntry = 32
	size := int64(len(e.body)+2*len(e.wl)+len(e.id)+64) + 2*perEntry
	for _, k := range e.set {
		size += int64(len(k)+len(e.breach)) + perEntry
	}
	for _, k := range e.del {
		size += int64(len(k)) + perEntry
	}
	return size, int64(2 + len(e.set) + len(e.del))
}

// writeTxn writes evs in one transaction.
func (w *Watchlists) writeTxn(evs []pendingEvent) error {
	err := w.db.Update(func(txn *badger.Txn) error {
		seq, err := getUint64(txn, keyEventSeq)
		if err != nil {
			return err
		}
		for _, e := range evs {
			seq++
			v := append(append(append([]byte{byte(len(e.wl))}, e.wl...), byte(len(e.id))), e.id...)
			if err := txn.Set(outboxKey(seq), append(v, e.body...)); err != nil {
				return err
			}
			if err := txn.Set(wlIndexKey(e.wl, seq), nil); err != nil {
				return err
			}
			for _, k := range e.set {
				if err := txn.Set(k, []byte(e.breach)); err != nil {
					return err
				}
			}
			for _, k := range e.del {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
		}
		return txn.Set(keyEventSeq, binary.BigEndian.AppendUint64(nil, seq))
	})
	return classify("write events", err)
}

// parseOutbox reads an outbox value.
func parseOutbox(seq uint64, v []byte) (breachd.OutboxEvent, error) {
	bad := fmt.Errorf("%w: outbox event %d", ErrCorrupt, seq)
	if len(v) < 1 || len(v) < 2+int(v[0]) {
		return breachd.OutboxEvent{}, bad
	}
	wl := string(v[1 : 1+v[0]])
	v = v[1+int(v[0]):]
	if len(v) < 1+int(v[0]) {
		return breachd.OutboxEvent{}, bad
	}
	return breachd.OutboxEvent{Seq: seq, Watchlist: wl, ID: string(v[1 : 1+v[0]]), Body: slices.Clone(v[1+v[0]:])}, nil
}

// PrunedUpto returns the position of the newest event pruned (0: none).
func (w *Watchlists) PrunedUpto(ctx context.Context) (uint64, error) {
	return w.readUint64(keyPrunedUpto, "events")
}

// LastEvent returns the position of the newest event (0: none).
func (w *Watchlists) LastEvent(ctx context.Context) (uint64, error) {
	return w.readUint64(keyEventSeq, "events")
}

// EventsAfter returns up to limit events after position after, of
// watchlist wl ("" for every watchlist), in order.
func (w *Watchlists) EventsAfter(ctx context.Context, wl string, after uint64, limit int) ([]breachd.OutboxEvent, error) {
	if err := w.acquire(); err != nil {
		return nil, err
	}
	defer w.release()
	var out []breachd.OutboxEvent
	err := w.db.View(func(txn *badger.Txn) error {
		prefix := []byte{tagOutbox}
		if wl != "" {
			prefix = wlPrefix(tagWLIndex, wl)
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(binary.BigEndian.AppendUint64(slices.Clone(prefix), after+1)); it.Valid() && len(out) < limit; it.Next() {
			k := it.Item().KeyCopy(nil)
			seq := binary.BigEndian.Uint64(k[len(k)-8:])
			item := it.Item()
			if wl != "" {
				var err error
				if item, err = txn.Get(outboxKey(seq)); err != nil {
					return fmt.Errorf("%w: watchlist %s's event %d: %v", ErrCorrupt, wl, seq, err)
				}
			}
			if err := item.Value(func(v []byte) error {
				e, err := parseOutbox(seq, v)
				out = append(out, e)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return out, classify("events", err)
}

// Cursor returns the position of the last event endpoint has had (0: none).
func (w *Watchlists) Cursor(ctx context.Context, endpoint string) (uint64, error) {
	return w.readUint64(cursorKey(endpoint), "delivery cursor")
}

func cursorKey(endpoint string) []byte { return append([]byte{tagCursor}, endpoint...) }

// Advance records that endpoint has had the event at seq, or, with dead
// set, that it gave up on it (a dead letter), at once.
func (w *Watchlists) Advance(ctx context.Context, endpoint string, seq uint64, dead *breachd.DeadLetter) error {
	if err := w.acquire(); err != nil {
		return err
	}
	defer w.release()
	err := w.db.Update(func(txn *badger.Txn) error {
		if dead != nil {
			v, err := json.Marshal(dead)
			if err != nil {
				return err
			}
			if err := txn.Set(seqKey(tagDead, deadPrefix(endpoint), seq), v); err != nil {
				return err
			}
		}
		return txn.Set(cursorKey(endpoint), binary.BigEndian.AppendUint64(nil, seq))
	})
	return classify("delivery cursor", err)
}

func deadPrefix(endpoint string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(endpoint))), endpoint...)
}

// Deliveries reports, for each endpoint, its cursor, the events after it
// and its dead letters.
func (w *Watchlists) Deliveries(ctx context.Context, endpoints []string) ([]breachd.Delivery, error) {
	last, err := w.LastEvent(ctx)
	if err != nil {
		return nil, err
	}
	var out []breachd.Delivery
	for _, ep := range endpoints {
		d := breachd.Delivery{Endpoint: ep}
		if d.Cursor, err = w.Cursor(ctx, ep); err != nil {
			return nil, err
		}
		d.Pending = last - min(last, d.Cursor)
		err := w.db.View(func(txn *badger.Txn) error {
			return scanPrefix(txn, append([]byte{tagDead}, deadPrefix(ep)...), func(_, v []byte) error {
				var dl breachd.DeadLetter
				if err := json.Unmarshal(v, &dl); err != nil {
					return fmt.Errorf("%w: dead letter: %v", ErrCorrupt, err)
				}
				d.DeadLetters = append(d.DeadLetters, dl)
				return nil
			})
		})
		if err != nil {
			return nil, classify("deliveries", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// dropExposures deletes the exposures of digest d on watchlist wl.
func dropExposures(txn *badger.Txn, wl string, d breachd.Digest) error {
	keys, err := keysUnder(txn, append(wlPrefix(tagExposure, wl), d[:]...))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// dropWatchlistExposures deletes every exposure of watchlist wl.
func (w *Watchlists) dropWatchlistExposures(ctx context.Context, wl string) error {
	if err := w.acquire(); err != nil {
		return err
	}
	defer w.release()
	return w.deleteUnder(wlPrefix(tagExposure, wl), "delete watchlist")
}

// deleteUnder deletes every key under prefix (op names the change, for
// its error); the caller holds a call slot.
func (w *Watchlists) deleteUnder(prefix []byte, op string) error {
	var keys [][]byte
	err := w.db.View(func(txn *badger.Txn) (err error) {
		keys, err = keysUnder(txn, prefix)
		return err
	})
	if err != nil {
		return classify(op, err)
	}
	return w.deleteKeys(keys)
}

// deleteKeys deletes keys, many a transaction.
func (w *Watchlists) deleteKeys(keys [][]byte) error {
	wb := w.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return classify("delete", err)
		}
	}
	return classify("delete", wb.Flush())
}

// PruneEvents deletes the events written before cutoff that every one of
// endpoints has had (delivered or dead-lettered), oldest first, and
// returns how many. Pull readers ('breachctl watch events') find only what
// is left: events are kept for a retention period, not for ever.
func (w *Watchlists) PruneEvents(ctx context.Context, cutoff time.Time, endpoints []string) (int, error) {
	upto, err := w.LastEvent(ctx)
	if err != nil {
		return 0, err
	}
	for _, ep := range endpoints {
		c, err := w.Cursor(ctx, ep)
		if err != nil {
			return 0, err
		}
		upto = min(upto, c)
	}
	if err := w.acquire(); err != nil {
		return 0, err
	}
	defer w.release()
	var keys [][]byte
	err = w.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tagOutbox}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			seq := binary.BigEndian.Uint64(it.Item().Key()[1:])
			if seq > upto {
				return nil
			}
			var head struct {
				Time time.Time `json:"time"`
			}
			var wl string
			if err := it.Item().Value(func(v []byte) error {
				e, err := parseOutbox(seq, v)
				if err != nil {
					return err
				}
				wl = e.Watchlist
				return json.Unmarshal(e.Body, &head)
			}); err != nil {
				return err
			}
			if !head.Time.Before(cutoff) {
				return nil // events are written in time order
			}
			keys = append(keys, it.Item().KeyCopy(nil), wlIndexKey(wl, seq))
		}
		return nil
	})
	if err != nil {
		return 0, classify("prune events", err)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	if err := w.deleteKeys(keys); err != nil {
		return 0, err
	}
	last := binary.BigEndian.Uint64(keys[len(keys)-2][1:])
	err = w.db.Update(func(txn *badger.Txn) error {
		return txn.Set(keyPrunedUpto, binary.BigEndian.AppendUint64(nil, last))
	})
	if err != nil {
		return 0, classify("prune events", err)
	}
	w.log.Info("events pruned", "events", len(keys)/2, "before", cutoff)
	return len(keys) / 2, nil
}
