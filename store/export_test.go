package store

// SetCrashPoint makes the store call f at each named crash point (see
// reach); the crash harness's child kills itself there.
func SetCrashPoint(f func(name string)) { crashPoint = f }

// MakeWords allocates filter words as the filter does (2 MiB aligned, huge
// pages advised), for the floor benchmark.
func MakeWords(n uint64) []uint64 { return makeWords(n) }

// WithHook returns o with f called at each named point of the store's work
// (Store.reach): a test stops, cancels or counts there.
func WithHook(o Options, f func(point string)) Options {
	o.hook = f
	return o
}
