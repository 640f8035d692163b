// Command breachctl is the command-line client of breachd.
//
//	breachctl check  --addr ADDR EMAIL...
//	breachctl hash   EMAIL
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd/canon"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // connection or server errors
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
		os.Exit(exitOK)
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errUsage):
		os.Exit(exitUsage)
	default:
		fmt.Fprintln(os.Stderr, "breachctl:", err)
		os.Exit(exitError)
	}
}

var errUsage = errors.New("usage")

const usage = `usage: breachctl <command> [flags]

commands:
  check   check email addresses against a breachd daemon
  hash    print the canonical form and digest of an email address

Run 'breachctl <command> -h' for a command's flags.
`

// conn holds the connection flags every command that talks to a daemon shares.
type connConfig struct {
	addr    string
	timeout time.Duration
}

func (c *connConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7355", "address of the breachd daemon")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline for each call")
}

func (c *connConfig) dial() (*grpc.ClientConn, error) {
	return grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "check":
		return check(ctx, args[1:], stdout, stderr)
	case "hash":
		return hash(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "breachctl: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

func check(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("breachctl check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cc connConfig
	cc.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: breachctl check [--addr HOST:PORT] EMAIL...\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	conn, err := cc.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	client := breachdv1.NewExposureServiceClient(conn)
	var version uint64
	for _, email := range fs.Args() {
		d, err := canon.Digest(email)
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", email, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, cc.timeout)
		resp, err := client.Check(cctx, &breachdv1.CheckRequest{EmailSha256: d[:]})
		cancel()
		if err != nil {
			return fmt.Errorf("check against %s: %s", cc.addr, status.Convert(err).Message())
		}
		version = resp.GetCorpusVersion()
		if !resp.GetExposed() {
			fmt.Fprintf(stdout, "%s: not exposed\n", email)
			continue
		}
		fmt.Fprintf(stdout, "%s: exposed in %d breach(es)\n", email, len(resp.GetBreaches()))
		for _, b := range resp.GetBreaches() {
			fmt.Fprintf(stdout, "  %s (%s, %s): %s\n", b.GetName(), b.GetTitle(), b.GetBreachDate(), strings.Join(b.GetDataClasses(), ", "))
		}
	}
	fmt.Fprintf(stdout, "corpus version %d\n", version)
	return nil
}

func hash(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("breachctl hash", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b64 := fs.Bool("base64", false, "print only the digest in base64 (the form grpcurl's JSON wants for bytes)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: breachctl hash [--base64] EMAIL\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	c, err := canon.Email(fs.Arg(0))
	if err != nil {
		return err
	}
	d := canon.Sum(c)
	if *b64 {
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(d[:]))
		return nil
	}
	fmt.Fprintf(stdout, "canonical  %s\nsha256     %s\n", c, d)
	return nil
}
