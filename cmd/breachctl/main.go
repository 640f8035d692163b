package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/dump"
	"github.com/breachd/breachd/internal/interrupt"
)

// Exit codes.
const (
	exitOK      = 0
	exitError   = 1 // connection or server errors
	exitUsage   = 2
	exitExposed = 3 // --fail-on-exposed and something was exposed
	exitInvalid = 4 // invalid rows: all of them, over --max-invalid, or any with --fail-on-invalid
)

func main() {
	ctx, stop := interrupt.Context() // a second Ctrl-C ends the process at once
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	code := exitCode(err)
	if code == exitInvalid || code == exitError {
		fmt.Fprintln(os.Stderr, "breachctl:", err)
	}
	os.Exit(code)
}

// exitCode is the exit status for run's error.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errUsage):
		return exitUsage
	case errors.Is(err, errExposed):
		return exitExposed
	case errors.Is(err, errInvalid), errors.Is(err, dump.ErrNoColumn), errors.Is(err, dump.ErrNotText), errors.Is(err, canon.ErrInvalidEmail):
		return exitInvalid
	default:
		return exitError
	}
}

var errUsage = errors.New("usage")

const usage = `usage: breachctl <command> [flags]

commands:
  check     check email addresses (arguments, or a whole file) against a breachd daemon
  assess    what a sign-in flow should do about an account (and its password): decision, reasons, facts
  breaches  list the daemon's breach catalogue
  watch     watchlists, and the exposure events of new breaches for them (create, add, remove, list, delete, events, deliveries)
  health    ask the daemon's gRPC health service (exit 0 when SERVING): for probes
  hash      print the canonical form and digest of an email address

Connection flags (--addr, --tls, --ca, --cert, --key, --api-key-file, --timeout) go
before or after the command; the API key comes from --api-key-file or BREACHD_API_KEY.

Run 'breachctl <command> -h' for a command's flags.
`

// connConfig holds the connection flags every command that talks to a
// daemon shares. They may also come before the command
// ('breachctl --ca FILE --api-key-file FILE check ...').
type connConfig struct {
	addr       string
	timeout    time.Duration
	tls        bool
	ca         string
	cert, key  string
	serverName string
	apiKeyFile string
}

// defaultConn returns the connection defaults, which the environment may
// set (BREACHCTL_ADDR, BREACHCTL_CA, BREACHCTL_CERT, BREACHCTL_KEY,
// BREACHCTL_SERVER_NAME, BREACHCTL_TLS): handy in containers and probes.
func defaultConn() connConfig {
	c := connConfig{addr: "127.0.0.1:7355", timeout: 10 * time.Second}
	for env, v := range map[string]*string{"BREACHCTL_ADDR": &c.addr, "BREACHCTL_CA": &c.ca, "BREACHCTL_CERT": &c.cert,
		"BREACHCTL_KEY": &c.key, "BREACHCTL_SERVER_NAME": &c.serverName} {
		if s := os.Getenv(env); s != "" {
			*v = s
		}
	}
	c.tls = os.Getenv("BREACHCTL_TLS") == "true"
	return c
}

func (c *connConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", c.addr, "address of the breachd daemon")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "deadline for each call")
	fs.BoolVar(&c.tls, "tls", c.tls, "use TLS with the system's roots (--ca or --cert imply TLS)")
	fs.StringVar(&c.ca, "ca", c.ca, "PEM CA the daemon's certificate is checked against (turns on TLS)")
	fs.StringVar(&c.cert, "cert", c.cert, "PEM client certificate for mutual TLS (with --key)")
	fs.StringVar(&c.key, "key", c.key, "PEM key of the client certificate")
	fs.StringVar(&c.serverName, "server-name", c.serverName, "name to check the daemon's certificate against (default: the host of --addr)")
	fs.StringVar(&c.apiKeyFile, "api-key-file", c.apiKeyFile, "file holding the API key (or set BREACHD_API_KEY); never pass a key on the command line")
}

func (c *connConfig) dial() (*grpc.ClientConn, error) {
	key, err := client.ReadAPIKey(c.apiKeyFile)
	if err != nil {
		return nil, err
	}
	return client.Dial(c.addr, client.DialOptions{TLS: c.tls, CAFile: c.ca, CertFile: c.cert, KeyFile: c.key, ServerName: c.serverName, APIKey: key})
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cc := defaultConn()
	if len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		fs := flag.NewFlagSet("breachctl", flag.ContinueOnError)
		fs.SetOutput(stderr)
		cc.register(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		args = fs.Args()
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "check":
		return check(ctx, cc, args[1:], stdout, stderr)
	case "assess":
		return assess(ctx, cc, args[1:], stdout, stderr)
	case "hash":
		return hash(args[1:], stdout, stderr)
	case "breaches":
		return breaches(ctx, cc, args[1:], stdout, stderr)
	case "health":
		return health(ctx, cc, args[1:], stdout, stderr)
	case "watch":
		return watch(ctx, cc, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "breachctl: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

func check(ctx context.Context, cc connConfig, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("breachctl check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cc.register(fs)
	var bc bulkConfig
	fs.StringVar(&bc.file, "file", "", "check every row of this file (- for stdin): CSV with a header, JSON Lines, or one email per line; gzip, zstd, bzip2, xz and UTF-16 are detected")
	fs.StringVar(&bc.column, "column", "email", "CSV column (or JSON Lines field) holding the email")
	fs.BoolVar(&bc.digests, "digests", false, "the file holds hex SHA-256 digests of canonical emails, one per line")
	fs.StringVar(&bc.out, "out", "-", "report file, - for stdout")
	fs.StringVar(&bc.format, "report-format", "csv", "report format: csv or jsonl (--format is the same flag)")
	fs.StringVar(&bc.format, "format", "csv", "the report's format, as --report-format (breachd import's --format is its input's)")
	fs.BoolVar(&bc.onlyExposed, "only-exposed", false, "report only exposed rows")
	fs.BoolVar(&bc.resume, "resume", false, "make the run resumable: run the same command again after an interruption to continue (needs --file PATH and --out PATH)")
	fs.BoolVar(&bc.failOnExposed, "fail-on-exposed", false, "exit with status 3 when any account is exposed")
	fs.BoolVar(&bc.failOnInvalid, "fail-on-invalid", false, "exit with status 4 when any row is invalid")
	fs.Float64Var(&bc.maxInvalid, "max-invalid", 0.5, "exit with status 4 when more than this share of rows is invalid (a misread input), 0 to 1; a run where every row is invalid always does")
	fs.IntVar(&bc.batch, "batch", 0, "digests per stream message, 1 to 10000 (default: 2000 until the daemon says how many it takes for your quota, then that, up to 8000)")
	fs.IntVar(&bc.inFlight, "in-flight", 4, "stream batches awaiting answers at once")
	fs.BoolVar(&bc.assess, "assess", false, "with --file: ask the daemon's policy about every row (AssessService, without passwords) and report its decision, what enforcing would answer and the rules that fired")
	assessAt := fs.String("context", "login", "with --assess: signup, login or password_change")
	cpuProfile := fs.String("cpu-profile", "", "write a CPU profile of the check to this file (go tool pprof): where a sweep's CPU goes")
	fs.BoolVar(&bc.private, "private", false, "private checks (docs/PRIVATE-LOOKUP.md): the daemon learns only a short prefix of each digest, never the digest; --in-flight of them run at once")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: breachctl check [flags] EMAIL...\n       breachctl check [flags] --file PATH [--out PATH]\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := flagsSet(fs)
	switch {
	case bc.file == "" && fs.NArg() == 0, bc.file != "" && fs.NArg() > 0:
		fs.Usage()
		return errUsage
	case bc.resume && (bc.file == "-" || bc.file == "" || bc.out == "-"):
		fmt.Fprintln(stderr, "breachctl check: --resume needs --file PATH and --out PATH (not stdin or stdout)")
		return errUsage
	case bc.format != "csv" && bc.format != "jsonl":
		fmt.Fprintf(stderr, "breachctl check: unknown --report-format %q: want csv or jsonl\n", bc.format)
		return errUsage
	case bc.assess && bc.private:
		fmt.Fprintln(stderr, "breachctl check: --assess and --private do not go together: an assessment names the account")
		return errUsage
	case bc.assess && bc.file == "":
		fmt.Fprintln(stderr, "breachctl check: --assess is for sweeps (--file); for one account use breachctl assess")
		return errUsage
	case set["context"] && !bc.assess:
		// A flag that does not apply is refused, not ignored: the run
		// would answer another question than the one asked.
		fmt.Fprintln(stderr, "breachctl check: --context is for --assess: without it, a check has no policy to ask")
		return errUsage
	case set["column"] && bc.digests:
		fmt.Fprintln(stderr, "breachctl check: --column and --digests do not go together: --digests reads one digest a line, no CSV")
		return errUsage
	case (set["column"] || set["digests"] || set["out"] || set["only-exposed"] || set["report-format"] || set["format"]) && bc.file == "":
		fmt.Fprintln(stderr, "breachctl check: --column, --digests, --out, --only-exposed and --report-format are for sweeps (--file); addresses on the command line are checked one by one, each answer printed")
		return errUsage
	case set["batch"] && (bc.batch < 1 || bc.batch > breachd.MaxBatch):
		fmt.Fprintf(stderr, "breachctl check: invalid --batch %d: want 1 to %d digests a message\n", bc.batch, breachd.MaxBatch)
		return errUsage
	case !(bc.maxInvalid >= 0 && bc.maxInvalid <= 1):
		fmt.Fprintf(stderr, "breachctl check: invalid --max-invalid %v: want a share from 0 to 1\n", bc.maxInvalid)
		return errUsage
	}
	if sameFile(bc.file, bc.out) {
		// Opened for the report, the input would be truncated: a user
		// base read only as far as its first buffer, then gone.
		fmt.Fprintf(stderr, "breachctl check: --out %s is the input file (--file %s): the report would overwrite it; name another file\n", bc.out, bc.file)
		return errUsage
	}
	var err error
	if bc.at, err = breachd.ParseAssessContext(*assessAt); err != nil {
		fmt.Fprintln(stderr, "breachctl check:", err)
		return errUsage
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	conn, err := cc.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	opts := []client.Option{client.WithInFlight(bc.inFlight)}
	if set["batch"] {
		opts = append(opts, client.WithBatchSize(bc.batch))
	}
	cl := client.New(conn, opts...)
	if bc.file != "" {
		if err := bulkCheck(ctx, bc, cl, stdout, stderr, isTerminal(stderr)); err != nil {
			if errors.Is(err, errExposed) || errors.Is(err, errInvalid) {
				return err
			}
			return fmt.Errorf("check against %s: %w", cc.addr, err)
		}
		return nil
	}
	var version uint64
	var exposed bool
	var invalid int64
	// Buffered, and flushed before each check: each answer shows as it
	// comes, and a failed write (a full disk) stays in out for the end.
	out := bufio.NewWriter(stdout)
	stdout = out
	for _, email := range fs.Args() {
		out.Flush()
		cctx, cancel := context.WithTimeout(ctx, cc.timeout)
		check := cl.Check
		if bc.private {
			check = cl.CheckPrivate
		}
		r, err := check(cctx, email)
		cancel()
		if errors.Is(err, canon.ErrInvalidEmail) {
			fmt.Fprintf(stdout, "%s: %v\n", email, err)
			invalid++
			continue
		}
		if err != nil {
			return fmt.Errorf("check against %s: %s", cc.addr, client.Explain(err))
		}
		version = r.CorpusVersion
		if !r.Exposed {
			fmt.Fprintf(stdout, "%s: not exposed\n", email)
			continue
		}
		exposed = true
		fmt.Fprintf(stdout, "%s: exposed in %d breach(es)\n", email, len(r.Breaches))
		for _, b := range r.Breaches {
			fmt.Fprintf(stdout, "  %s (%s, %s): %s\n", b.Name, b.Title, b.BreachDate, strings.Join(b.DataClasses, ", "))
		}
	}
	if invalid < int64(fs.NArg()) { // not when no address was asked about
		fmt.Fprintf(stdout, "corpus version %d\n", version)
	}
	if err := out.Flush(); err != nil {
		// A full disk, a closed pipe: a script reading the answers would
		// find none, or half, and exit status 0.
		return fmt.Errorf("writing the answers: %w", err)
	}
	if err := bc.checkInvalid(int64(fs.NArg()), invalid); err != nil {
		return err
	}
	if bc.failOnExposed && exposed {
		return errExposed
	}
	return nil
}

func breaches(ctx context.Context, cc connConfig, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("breachctl breaches", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cc.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: breachctl breaches [--addr HOST:PORT]")
		return errUsage
	}
	conn, err := cc.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, cc.timeout)
	defer cancel()
	bs, version, err := client.New(conn).Breaches(cctx)
	if err != nil {
		return fmt.Errorf("list breaches at %s: %s", cc.addr, client.Explain(err))
	}
	writeBreaches(stdout, bs, version)
	return nil
}

func writeBreaches(w io.Writer, bs []client.CatalogEntry, version uint64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTITLE\tBREACH DATE\tACCOUNTS\tDATA CLASSES")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Name, b.Title, b.BreachDate, b.AccountCount, strings.Join(b.DataClasses, ", "))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d breaches, corpus version %d\n", len(bs), version)
}

// flagsSet returns the names of the flags given on fs's command line, so
// that one that does not apply to the run is refused, not ignored.
func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// health asks the gRPC health service, for container and probe checks.
func health(ctx context.Context, cc connConfig, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("breachctl health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cc.register(fs)
	service := fs.String("service", "", "the service to ask about; empty for the daemon as a whole")
	readyz := fs.String("readyz", "", "instead, GET this /readyz URL of the daemon's metrics listener (http://127.0.0.1:9355/readyz): "+
		"works whatever the TLS and client-certificate settings, for container health checks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || (*readyz != "" && *service != "") {
		// /readyz answers for the daemon as a whole: a --service beside it
		// would be ignored, and its probe pass for a service not serving.
		fmt.Fprintln(stderr, "usage: breachctl health [--addr HOST:PORT] [--service NAME] | --readyz URL")
		return errUsage
	}
	if *readyz != "" {
		return ready(ctx, *readyz, cc.timeout, stdout)
	}
	conn, err := cc.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, cc.timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{Service: *service})
	if err != nil {
		return fmt.Errorf("health of %s: %s", cc.addr, client.Explain(err))
	}
	fmt.Fprintln(stdout, resp.GetStatus())
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return errNotServing
	}
	return nil
}

var errNotServing = errors.New("not serving")

// ready asks a daemon's /readyz: 200 is ready, anything else says why not.
func ready(ctx context.Context, url string, timeout time.Duration, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("readiness at %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprint(stdout, string(body))
	if resp.StatusCode != http.StatusOK {
		return errNotServing
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
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

// sameFile reports whether paths a and b name one existing file (through
// a link, a relative path or another spelling); "-" is no file.
func sameFile(a, b string) bool {
	if a == "" || b == "" || a == "-" || b == "-" {
		return false
	}
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
