package certs

import "time"

// SetSettle sets how long Watch waits after a change before reloading: a
// test sets 0, so that each change reloads at once, in order.
func (r *Reloader) SetSettle(d time.Duration) { r.settle = d }
