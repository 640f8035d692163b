package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// daemon is a breachd process started for the run.
type daemon struct {
	cmd     *exec.Cmd
	addr    string
	started time.Duration // from exec to SERVING: opening the store and filter
	exited  bool          // waited for already (the soak's SIGTERM)
}

// startDaemon starts bin serving data on a free loopback port and waits
// until it reports SERVING; admin turns on its AdminService (for the soak's
// imports and deletes).
func startDaemon(ctx context.Context, bin, data string, admin bool, stderr io.Writer) (*daemon, error) {
	// Pick a free port; the daemon binds it a moment later.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := lis.Addr().String()
	lis.Close()
	cmd := exec.Command(bin, "serve", "--data", data, "--addr", addr, "--admin="+strconv.FormatBool(admin), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{cmd: cmd, addr: addr}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.stop()
		return nil, err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if ctx.Err() != nil || time.Since(start) > 10*time.Minute {
			d.stop()
			return nil, fmt.Errorf("daemon on %s did not become ready: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.started = time.Since(start)
	return d, nil
}

func (d *daemon) stop() {
	if d.exited {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
}

// memory is the daemon's resident memory, in bytes.
type memory struct {
	rss, peak  int64 // resident now, and at the peak
	anon, file int64 // of rss: heap and stacks; mapped files (Badger's tables, reclaimable)
}

func (d *daemon) memory() (memory, error) {
	var m memory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "VmHWM:":
			m.peak = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		case "RssFile:":
			m.file = kb << 10
		}
	}
	return m, nil
}
