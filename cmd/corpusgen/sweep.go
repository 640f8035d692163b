package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"github.com/breachd/breachd/synth"
)

// sweepFile writes c.sweep addresses, one CSV column headed "email", for a
// bulk check at a chosen exposure rate: c.exposed percent are accounts of
// the corpus --seed and --records generate (sampled over it), the
// rest outsiders under a domain no corpus uses, in random order. It reports
// the exact count of each on stderr.
func sweepFile(c config, stdout, stderr io.Writer) error {
	want := int(float64(c.sweep) * c.exposed / 100)
	var in []string
	if want > 0 {
		// Sample about want of the corpus's accounts, each with the same
		// chance; the corpus has a little fewer accounts than rows.
		p := min(1, 1.2*float64(want)/float64(c.records))
		r := rand.New(rand.NewPCG(c.seed, 0x5eed))
		acc := &lineSink{fn: func(line []byte) {
			if len(in) < want && r.Float64() < p {
				in = append(in, string(line))
			}
		}}
		if _, err := synth.Generate(io.Discard, synth.Options{Seed: c.seed, Records: c.records, DirtyPercent: c.dirty, Domain: c.domain, Accounts: acc}); err != nil {
			return err
		}
	}
	var out []string
	if n := c.sweep - len(in); n > 0 {
		acc := &lineSink{fn: func(line []byte) { out = append(out, string(line)) }}
		if _, err := synth.Generate(io.Discard, synth.Options{Seed: c.seed + 1e6, Records: n + n/16 + 16, DirtyPercent: -1,
			Domain: "outsiders.invalid", Accounts: acc}); err != nil {
			return err
		}
		out = out[:min(n, len(out))]
	}
	w := stdout
	if c.out != "-" {
		f, err := os.Create(c.out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	fmt.Fprintln(bw, "email")
	r := rand.New(rand.NewPCG(c.seed, 0x5ee9))
	i, j := 0, 0
	for i < len(in) || j < len(out) {
		// Interleave at random, in proportion to what is left of each.
		if j == len(out) || (i < len(in) && r.IntN(len(in)-i+len(out)-j) < len(in)-i) {
			bw.WriteString(in[i])
			i++
		} else {
			bw.WriteString(out[j])
			j++
		}
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "corpusgen: %d addresses, %d in the corpus (%.1f%%), %d outsiders\n",
		len(in)+len(out), len(in), 100*float64(len(in))/float64(max(1, len(in)+len(out))), len(out))
	return nil
}

// lineSink calls fn with each line written to it (without the newline).
type lineSink struct {
	fn   func([]byte)
	part []byte
}

func (s *lineSink) Write(p []byte) (int, error) {
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.part = append(s.part, p...)
			return n, nil
		}
		if len(s.part) > 0 {
			s.fn(append(s.part, p[:i]...))
			s.part = s.part[:0]
		} else {
			s.fn(p[:i])
		}
		p = p[i+1:]
	}
}
