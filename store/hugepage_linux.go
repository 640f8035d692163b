package store

import (
	"syscall"
	"unsafe"
)

const (
	hugePage     = 2 << 20
	madvCollapse = 25 // MADV_COLLAPSE, not in package syscall
)

// makeWords allocates n zeroed words for the filter's bit set, aligned to a
// 2 MiB boundary, and asks the kernel to back them with transparent huge
// pages. A filter test is one random cache line; with 4 KiB pages it is also
// a TLB miss and a page walk, which on a large filter costs about as much as
// the cache miss itself. Where huge pages are off ("never") the advice is
// ignored and the filter works the same. The alignment slack is never
// touched, so it costs address space, not memory.
func makeWords(n uint64) []uint64 {
	if n*8 < hugePage {
		return make([]uint64, n)
	}
	raw := make([]uint64, n+hugePage/8)
	off := (hugePage - uintptr(unsafe.Pointer(&raw[0]))%hugePage) % hugePage / 8
	words := raw[off : off+uintptr(n) : off+uintptr(n)]
	b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n*8)
	// Advice only: HUGEPAGE covers pages faulted from now on, COLLAPSE
	// (Linux 6.1+) the ones the runtime already touched to zero them.
	_ = syscall.Madvise(b, syscall.MADV_HUGEPAGE)
	_ = syscall.Madvise(b, madvCollapse)
	return words
}
