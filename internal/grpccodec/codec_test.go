package grpccodec

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // grpc-go's codec, the baseline
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// batch is a CheckStream request of n digests, each byte fill.
func batch(n int, fill byte) *breachdv1.CheckStreamRequest {
	return &breachdv1.CheckStreamRequest{EmailSha256: bytes.Repeat([]byte{fill}, 32*n), MinCorpusVersion: uint64(n)}
}

// frames cuts b into pieces of at most size bytes, as gRPC's transport
// hands a message over in HTTP/2 data frames.
func frames(b []byte, size int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(size, len(b))
		s = append(s, mem.SliceBuffer(bytes.Clone(b[:n])))
		b = b[n:]
	}
	return s
}

// TestCodec: messages of every size class, whole and in 16 KiB frames,
// marshal to proto.Marshal's bytes and unmarshal to the message sent. The
// buffers are reused without clearing, so messages alternate large and
// small (a small one decoded from a buffer a large one filled), and a
// decoded message must not share the pooled buffer: the buffer is
// scribbled over, and every message is checked again at the end.
func TestCodec(t *testing.T) {
	var kept []*breachdv1.CheckStreamRequest
	var want []*breachdv1.CheckStreamRequest
	for i, n := range []int{0, 1, 31, 1000, 2000, 10000, 3, 2000, 1, 10000, 0} {
		in := batch(n, byte(i+1))
		wire, err := proto.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Codec.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Materialize(), wire) {
			t.Fatalf("%d digests: marshalled %d bytes, not proto.Marshal's %d", n, got.Len(), len(wire))
		}
		got.Free()
		for _, frame := range []int{len(wire) + 1, 16 << 10} {
			out := new(breachdv1.CheckStreamRequest)
			if err := Codec.Unmarshal(frames(wire, max(frame, 1)), out); err != nil {
				t.Fatalf("%d digests in frames of %d: %v", n, frame, err)
			}
			if !proto.Equal(out, in) {
				t.Fatalf("%d digests in frames of %d: decoded %d bytes of digests, version %d", n, frame, len(out.EmailSha256), out.MinCorpusVersion)
			}
			kept, want = append(kept, out), append(want, in)
			// Scribble over the buffer the message was gathered in (the
			// pool's next one of its class): out must not see it.
			scratch := buffers.Get(len(wire))
			for i := range *scratch {
				(*scratch)[i] = 0xAA
			}
			buffers.Put(scratch)
		}
	}
	for i := range kept {
		if !proto.Equal(kept[i], want[i]) {
			t.Fatalf("message %d changed after its buffer was reused", i)
		}
	}
	if err := Codec.Unmarshal(frames([]byte{0xff, 0xff}, 1), new(breachdv1.CheckStreamRequest)); err == nil {
		t.Fatal("a malformed message decoded")
	}
	if _, err := Codec.Marshal("not a message"); err == nil {
		t.Fatal("a string marshalled")
	}
}

// TestPool: a buffer has the length asked and a power-of-two capacity
// that holds it; one not from the pool is not kept.
func TestPool(t *testing.T) {
	for _, n := range []int{1, 1024, 1025, 64 << 10, 64<<10 + 5, 1 << 26, 1<<26 + 1} {
		b := buffers.Get(n)
		if len(*b) != n || cap(*b) < n || (n <= 1<<26 && cap(*b)&(cap(*b)-1) != 0) {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		buffers.Put(b)
	}
	odd := make([]byte, 3000)
	buffers.Put(&odd) // not a power of two: dropped
	if b := buffers.Get(3000); cap(*b) != 4096 {
		t.Fatalf("Get(3000) after a foreign Put: cap %d, want 4096", cap(*b))
	}
}

// codecs are the codecs the benchmarks compare: grpc-go's and this one.
func codecs() []struct {
	name  string
	codec encoding.CodecV2
} {
	return []struct {
		name  string
		codec encoding.CodecV2
	}{{"grpc", encoding.GetCodecV2("proto")}, {"grpccodec", Codec}}
}

// BenchmarkUnmarshal decodes a bulk batch as a server receives it (16 KiB
// data frames), with grpc-go's codec and with this one.
func BenchmarkUnmarshal(b *testing.B) {
	for _, n := range []int{1000, 2000, 8000} {
		wire, _ := proto.Marshal(batch(n, 7))
		in := frames(wire, 16<<10)
		for _, c := range codecs() {
			b.Run(fmt.Sprintf("digests=%d/codec=%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(wire)))
				out := new(breachdv1.CheckStreamRequest)
				for b.Loop() {
					if err := c.codec.Unmarshal(in, out); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMarshal encodes a bulk batch as a client sends it.
func BenchmarkMarshal(b *testing.B) {
	for _, n := range []int{1000, 2000, 8000} {
		msg := batch(n, 7)
		for _, c := range codecs() {
			b.Run(fmt.Sprintf("digests=%d/codec=%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					s, err := c.codec.Marshal(msg)
					if err != nil {
						b.Fatal(err)
					}
					s.Free()
				}
			})
		}
	}
}
