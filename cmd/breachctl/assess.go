package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/dump"
)

// assess asks the daemon what to do about one account at sign-in. The
// password, if any, comes from a file or stdin, never the command line,
// and only its SHA-1 leaves this process.
func assess(ctx context.Context, cc connConfig, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("breachctl assess", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cc.register(fs)
	at := fs.String("context", "login", "where in the sign-in flow: signup, login or password_change")
	pwFile := fs.String("password-file", "", "file whose first line is the password (- for stdin); only its SHA-1 is sent")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: breachctl assess [flags] [--password-file FILE|-] EMAIL\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	actx, err := breachd.ParseAssessContext(*at)
	if err != nil {
		fmt.Fprintln(stderr, "breachctl assess:", err)
		return errUsage
	}
	password, err := readPassword(ctx, *pwFile)
	if err != nil {
		return err
	}
	conn, err := cc.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, cc.timeout)
	defer cancel()
	email := fs.Arg(0)
	a, err := client.New(conn).Assess(cctx, email, password, actx)
	if err != nil {
		if errors.Is(err, canon.ErrInvalidEmail) { // an invalid row, as check's: exit status 4
			return fmt.Errorf("%s: %w", email, err)
		}
		if _, ok := status.FromError(err); ok {
			return fmt.Errorf("assess against %s: %s", cc.addr, client.Explain(err))
		}
		return err
	}
	mode := "enforced"
	if !a.Enforced {
		mode = "report-only; enforcing would answer " + a.WouldBe.String()
	}
	fmt.Fprintf(stdout, "%s: %s (%s)\n", email, a.Decision, mode)
	if len(a.Reasons) > 0 {
		fmt.Fprintf(stdout, "  reasons: %s\n", strings.Join(a.Reasons, ", "))
	}
	for _, b := range a.Breaches {
		fmt.Fprintf(stdout, "  %s (%s, %s): password %s\n", b.Name, b.Title, b.BreachDate, strings.ReplaceAll(b.Password.String(), "_", " "))
	}
	if password != "" {
		fmt.Fprintf(stdout, "  password seen %d times in the password corpus\n", a.PasswordCount)
	}
	fmt.Fprintf(stdout, "corpus version %d\n", a.CorpusVersion)
	return nil
}

// readPassword returns the first line of file (- for stdin; "" for none).
func readPassword(ctx context.Context, file string) (string, error) {
	if file == "" {
		return "", nil
	}
	in, _, err := dump.Open(ctx, file)
	if err != nil {
		return "", err
	}
	defer in.Close()
	line, err := dump.FirstLine(in)
	if err != nil {
		return "", err
	}
	if line == "" {
		return "", errors.New("--password-file: the first line is empty")
	}
	return line, nil
}
