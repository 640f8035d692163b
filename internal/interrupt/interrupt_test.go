package interrupt_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/breachd/breachd/internal/interrupt"
)

// TestSecondSignalEnds runs this test binary again as a command that takes
// its context from Context and then ignores it, as a command slow to stop
// would. The first SIGINT cancels the context and the process goes on; a
// later one ends it, by the signal.
func TestSecondSignalEnds(t *testing.T) {
	if os.Getenv("INTERRUPT_CHILD") == "1" {
		child()
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondSignalEnds$")
	cmd.Env = append(os.Environ(), "INTERRUPT_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	expect := func(want string) {
		t.Helper()
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("the command wrote %q (%v), want %q", lines.Text(), lines.Err(), want)
		}
	}
	expect("ready")
	cmd.Process.Signal(os.Interrupt)
	expect("cancelled") // the first signal cancelled, and did not end it
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Until the signals are released, after the cancel, another one is
	// still only noted: send it until the process ends.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
				t.Fatalf("after a second SIGINT the command ended with %v, want killed by SIGINT", err)
			}
			return
		case <-tick.C:
			cmd.Process.Signal(os.Interrupt)
		case <-deadline:
			t.Fatal("the command still runs 10s after a second SIGINT")
		}
	}
}

// child is the command: it waits for its context, says so, and then does
// not stop.
func child() {
	ctx, stop := interrupt.Context()
	defer stop()
	fmt.Println("ready")
	<-ctx.Done()
	fmt.Println("cancelled")
	time.Sleep(time.Minute)
	os.Exit(0)
}
