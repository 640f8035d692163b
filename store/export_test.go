package store

// SetCrashPoint makes the store call f at each named crash point (see
// reach); the crash harness's child kills itself there.
func SetCrashPoint(f func(name string)) { crashPoint = f }

// MakeWords allocates filter words as the filter does (2 MiB aligned, huge
// pages advised), for the floor benchmark.
func MakeWords(n uint64) []uint64 { return makeWords(n) }
