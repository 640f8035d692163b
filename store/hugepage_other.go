//go:build !linux

package store

func makeWords(n uint64) []uint64 { return make([]uint64, n) }
