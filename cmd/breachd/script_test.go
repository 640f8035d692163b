package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rogpeppe/go-internal/testscript"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/internal/porttest"
)

// The README's walkthroughs run as scripts (testdata/script/*.txtar, the
// go command's own convention): a README command that stops working fails
// make test. Each script names the README section it mirrors; keep the two
// in step. 'breachd' runs this package's main; breachctl and corpusgen are
// built once for the scripts.

func TestMain(m *testing.M) {
	testscript.Main(cleanupTools{m}, map[string]func(){"breachd": main})
}

// cleanupTools runs the tests, then removes the tools' directory: the
// three binaries are 60 MB a run, left in the system's temporary directory
// otherwise.
type cleanupTools struct{ m *testing.M }

func (c cleanupTools) Run() int {
	code := c.m.Run()
	if toolsDir != "" {
		os.RemoveAll(toolsDir)
	}
	return code
}

var (
	toolsOnce sync.Once
	toolsDir  string
	toolsErr  error
)

// tools builds breachd, breachctl and corpusgen into a directory for the scripts'
// PATH.
func tools(t *testing.T) string {
	toolsOnce.Do(func() {
		toolsDir, toolsErr = os.MkdirTemp("", "breachd-script-tools")
		if toolsErr != nil {
			return
		}
		os.Chmod(toolsDir, 0o755) // TestSystemdService runs breachd as another user
		for _, cmd := range []string{"breachd", "breachctl", "corpusgen"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(toolsDir, cmd), "github.com/breachd/breachd/cmd/"+cmd).CombinedOutput()
			if err != nil {
				toolsErr = fmt.Errorf("go build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	return toolsDir
}

func TestScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLIs and starts daemons")
	}
	t.Parallel()
	bin := tools(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("PATH", bin+string(os.PathListSeparator)+e.Getenv("PATH"))
			return nil
		},
		Condition: func(cond string) (bool, error) {
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// freeport NAME: sets $NAME to a free loopback port.
			"freeport": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: freeport NAME")
				}
				port, err := porttest.Reserve()
				ts.Check(err)
				ts.Setenv(args[0], strconv.Itoa(port))
			},
			// sleep DURATION: as the README's sessions do, to let a
			// daemon's periodic reload (keys) happen.
			"sleep": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: sleep DURATION")
				}
				d, err := time.ParseDuration(args[0])
				ts.Check(err)
				time.Sleep(d)
			},
			// natsserver NAME: starts a JetStream server for the script
			// (Debian's nats-server in the README) and sets $NAME to its URL.
			"natsserver": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: natsserver NAME")
				}
				s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
					StoreDir: ts.MkAbs("nats"), NoLog: true, NoSigs: true})
				ts.Check(err)
				go s.Start()
				if !s.ReadyForConnections(20 * time.Second) {
					ts.Fatalf("the NATS server did not start")
				}
				ts.Defer(s.Shutdown)
				ts.Setenv(args[0], s.ClientURL())
			},
			// atversion ADDR N: waits until the daemon at ADDR answers at
			// corpus version N or later (a replica catching up).
			"atversion": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: atversion ADDR N")
				}
				n, err := strconv.ParseUint(args[1], 10, 64)
				ts.Check(err)
				conn, err := client.Dial(args[0], client.DialOptions{})
				ts.Check(err)
				defer conn.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				_, err = client.New(conn).CheckDigest(client.AtLeast(ctx, n), breachd.Digest{})
				ts.Check(err)
			},
			// serving ADDR [CAFILE]: waits until the daemon at ADDR says
			// SERVING (over TLS with CAFILE).
			"serving": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 1 || len(args) > 2 {
					ts.Fatalf("usage: serving ADDR [CAFILE]")
				}
				o := client.DialOptions{}
				if len(args) == 2 {
					o.CAFile = ts.MkAbs(args[1])
				}
				conn, err := client.Dial(args[0], o)
				ts.Check(err)
				defer conn.Close()
				hc := healthpb.NewHealthClient(conn)
				deadline := time.Now().Add(60 * time.Second)
				for {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
					cancel()
					if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
						return
					}
					if time.Now().After(deadline) {
						ts.Fatalf("the daemon at %s did not say SERVING within 60s: %v", args[0], err)
					}
					time.Sleep(50 * time.Millisecond) // polls for the daemon's start, an event
				}
			},
		},
	})
}
