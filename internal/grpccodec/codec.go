package grpccodec

import (
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec is the codec: grpc.ForceServerCodecV2(Codec) on a server,
// grpc.ForceCodecV2(Codec) on a call.
var Codec encoding.CodecV2 = codec{}

type codec struct{}

// Name is grpc-go's codec's: the content subtype stays "proto".
func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("grpccodec: cannot marshal %T, not a proto.Message", v)
	}
	// Size, then UseCachedSize: the message is not changed in between.
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := buffers.Get(size)
	b, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		buffers.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, buffers)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("grpccodec: cannot unmarshal into %T, not a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(buffers) // one buffer as it is; several gathered
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// buffers hands out buffers of power-of-two capacities, 1 KiB to 64 MiB (the
// largest message either side accepts), without clearing them; larger
// requests are allocated and not kept.
var buffers mem.BufferPool = &pool{}

const (
	minClass = 10 // 1 KiB
	maxClass = 26 // 64 MiB
)

type pool struct {
	classes [maxClass + 1]sync.Pool
}

// class is the smallest power-of-two exponent whose buffer holds n.
func class(n int) int { return max(minClass, bits.Len(uint(n-1))) }

func (p *pool) Get(n int) *[]byte {
	c := class(n)
	if c > maxClass {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

func (p *pool) Put(b *[]byte) {
	c := bits.Len(uint(cap(*b))) - 1
	if c < minClass || c > maxClass || cap(*b) != 1<<c {
		return // not one of ours
	}
	*b = (*b)[:0]
	p.classes[c].Put(b)
}
