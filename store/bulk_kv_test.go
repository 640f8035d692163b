package store

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/ristretto/v2/z"
)

// TestPutKV checks that putKV writes the bytes badger.KVToBuffer writes,
// for the KVs a bulk load sends and for empty and large fields.
func TestPutKV(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	bytesOf := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	kvs := []pb.KV{
		{Key: bytesOf(21), Value: bytesOf(12), Version: 1, StreamId: 1},
		{Key: bytesOf(33), Value: bytesOf(4), Version: 1, StreamId: 1},
		{Key: bytesOf(33), Value: bytesOf(4 * 300), Version: 1 << 40, StreamId: 1 << 20},
		{Key: bytesOf(1)},
		{Value: bytesOf(3), Version: 7},
		{StreamId: 3},
		{},
	}
	for range 200 {
		kvs = append(kvs, pb.KV{Key: bytesOf(r.IntN(300)), Value: bytesOf(r.IntN(300)), Version: r.Uint64() >> r.UintN(64), StreamId: r.Uint32() >> r.UintN(32)})
	}
	want, got := z.NewBuffer(1<<16, "test.want"), z.NewBuffer(1<<16, "test.got")
	defer want.Release()
	defer got.Release()
	for i := range kvs {
		badger.KVToBuffer(&kvs[i], want)
		putKV(got, kvs[i].Key, kvs[i].Value, kvs[i].Version, kvs[i].StreamId)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("putKV wrote %d bytes unlike KVToBuffer's %d", got.LenNoPadding(), want.LenNoPadding())
	}
}
