package store

// SetCrashPoint makes the store call f at each named crash point (see
// reach); the crash harness's child kills itself there.
func SetCrashPoint(f func(name string)) { crashPoint = f }
