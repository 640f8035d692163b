package interrupt

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Context returns a context cancelled by the process's first SIGINT or
// SIGTERM. From then on those signals have their default effect again:
// the next one ends the process. stop releases the signals early (call it
// when the command returns).
func Context() (ctx context.Context, stop context.CancelFunc) {
	ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}
