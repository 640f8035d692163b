package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/atomicfile"
	"github.com/breachd/breachd/internal/interrupt"
	"github.com/breachd/breachd/synth"
)

func main() {
	ctx, stop := interrupt.Context() // a second Ctrl-C ends the process at once
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "corpusgen:", err)
		os.Exit(1)
	}
}

type config struct {
	seed     uint64
	records  int
	dirty    float64
	out      string
	accounts string
	domain   string
	sample   int
	sweep    int
	exposed  float64
	pwned    int
	kind     string
	every    bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("corpusgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.Uint64Var(&c.seed, "seed", 2011, "PRNG seed; the same seed and flags always give the same dump")
	fs.IntVar(&c.records, "records", 1290775, "data rows to write, dirty rows included")
	fs.Float64Var(&c.dirty, "dirty", 3, "percent of rows that are re-cased, padded, duplicated or malformed (negative: none)")
	fs.StringVar(&c.out, "out", "-", "output file, - for stdout")
	fs.StringVar(&c.accounts, "accounts", "", "also write the canonical email of every distinct account here (ground truth for tests)")
	fs.StringVar(&c.domain, "domain", "", "put every address under subdomains of this domain (for corpora disjoint from the demo)")
	fs.IntVar(&c.sample, "sample", 0, "print the first N accounts of the corpus instead of writing it")
	fs.IntVar(&c.sweep, "sweep", 0, "write N addresses to check instead of the dump: --exposed percent of them accounts of the corpus (--seed, --records), the rest outsiders, shuffled")
	fs.Float64Var(&c.exposed, "exposed", 0, "with --sweep: percent of the addresses that are in the corpus")
	fs.IntVar(&c.pwned, "pwned", 0, "write a Pwned-Passwords-shaped corpus of N hashes (HASH:COUNT lines, sorted) instead of a breach dump")
	fs.StringVar(&c.kind, "kind", "sha1", "with --pwned: sha1 or ntlm")
	fs.BoolVar(&c.every, "every-prefix", false, "with --pwned: spread the hashes so that every 3-byte prefix holds one (16777216 hashes or more), as pwnedpass's pwngen requires")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: corpusgen [flags]\n\nWrites a synthetic Sega Pass-shaped dump. Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.pwned > 0 {
		return pwnedFile(c, stdout)
	}
	if c.sweep > 0 {
		if c.exposed < 0 || c.exposed > 100 {
			return fmt.Errorf("--exposed %v: want a percentage from 0 to 100", c.exposed)
		}
		return sweepFile(c, stdout, stderr)
	}
	return generate(ctx, c, stdout, stderr)
}

func generate(_ context.Context, c config, stdout, stderr io.Writer) error {
	opts := synth.Options{Seed: c.seed, Records: c.records, DirtyPercent: c.dirty, Domain: c.domain}
	if c.sample > 0 {
		w := &firstLines{w: stdout, n: c.sample}
		opts.Accounts = w
		_, err := synth.Generate(io.Discard, opts)
		if err != nil && err != errEnough {
			return err
		}
		return nil
	}
	if c.out == "-" {
		_, err := synth.Generate(stdout, opts)
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.out), 0o755); err != nil {
		return err
	}
	f, err := atomicfile.Create(c.out, 0o644) // a demo dump: no one's data
	if err != nil {
		return err
	}
	defer f.Abort() // nothing after Commit
	if c.accounts != "" {
		af, err := os.Create(c.accounts)
		if err != nil {
			return err
		}
		defer af.Close()
		opts.Accounts = af
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	st, err := synth.Generate(bw, opts)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "corpusgen: wrote %s: %d rows, %d accounts, %d duplicates, %d malformed\n",
		c.out, st.Rows, st.Accounts, st.Duplicates, st.Malformed)
	return nil
}

var errEnough = errors.New("enough lines")

// firstLines passes through the first n lines and then fails the write,
// which stops the generator early.
type firstLines struct {
	w io.Writer
	n int
}

func (f *firstLines) Write(p []byte) (int, error) {
	for i, b := range p {
		if b == '\n' {
			f.n--
			if f.n == 0 {
				if _, err := f.w.Write(p[:i+1]); err != nil {
					return 0, err
				}
				return i + 1, errEnough
			}
		}
	}
	return f.w.Write(p)
}

// pwnedFile writes a synthetic password corpus (--pwned).
func pwnedFile(c config, stdout io.Writer) error {
	k, err := breachd.ParseHashKind(c.kind)
	if err != nil {
		return err
	}
	w, closeOut, err := output(c.out, stdout)
	if err != nil {
		return err
	}
	if err := synth.WritePwned(w, synth.PwnedOptions{Seed: c.seed, Hashes: c.pwned, Kind: k, EveryPrefix: c.every}); err != nil {
		closeOut()
		return err
	}
	return closeOut()
}

// output opens where a file goes: stdout for "-", else path; close
// reports the write's own errors.
func output(path string, stdout io.Writer) (io.Writer, func() error, error) {
	if path == "-" {
		return stdout, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}
