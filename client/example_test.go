package client_test

import (
	"context"
	"fmt"
	"iter"
	"log"
	"maps"
	"os"
	"slices"

	"google.golang.org/grpc"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/daemon/daemontest"
)

// demo is a real daemon on 127.0.0.1, with the AdminService on.
type demo struct {
	dir  string
	srv  *daemon.Daemon
	conn *grpc.ClientConn
}

func startDemo() (*demo, error) {
	dir, err := os.MkdirTemp("", "breachd-example")
	if err != nil {
		return nil, err
	}
	srv, err := daemon.Start(context.Background(), daemontest.Config(dir), nil)
	if err != nil {
		return nil, err
	}
	// The demo imports through the client: a daemon without TLS takes
	// admin calls on its unix socket, which serves lookups too.
	conn, err := client.Dial("unix://"+srv.AdminSocket(), client.DialOptions{})
	if err != nil {
		return nil, err
	}
	return &demo{dir: dir, srv: srv, conn: conn}, nil
}

func (d *demo) stop() {
	d.conn.Close()
	d.srv.Close()
	os.RemoveAll(d.dir)
}

// demoServer starts a demo daemon and imports each breach's emails through
// the client. It returns a connection and a function that tears it down.
func demoServer(breaches map[string][]string) (*grpc.ClientConn, func()) {
	d, err := startDemo()
	if err != nil {
		log.Fatal(err)
	}
	c := client.New(d.conn)
	for _, name := range slices.Sorted(maps.Keys(breaches)) {
		b := breachd.Breach{Name: name, Title: name, BreachDate: "2011-06-17", DataClasses: []string{"Email addresses", "Passwords"}}
		if _, err := c.Import(context.Background(), b, emailBatches(breaches[name])); err != nil {
			log.Fatal(err)
		}
	}
	return d.conn, d.stop
}

// emailBatches yields the digests of emails as one batch.
func emailBatches(emails []string) iter.Seq2[[]breachd.Digest, error] {
	return func(yield func([]breachd.Digest, error) bool) {
		var ds []breachd.Digest
		for _, e := range emails {
			d, err := canon.Digest(e)
			if err != nil {
				yield(nil, err)
				return
			}
			ds = append(ds, d)
		}
		yield(ds, nil)
	}
}

func ExampleClient_Import() {
	d, err := startDemo()
	if err != nil {
		log.Fatal(err)
	}
	defer d.stop()

	c := client.New(d.conn)
	b := breachd.Breach{Name: "SegaPass", Title: "Sega Pass", BreachDate: "2011-06-17", DataClasses: []string{"Email addresses"}}
	st, err := c.Import(context.Background(), b, emailBatches([]string{"alice@example.com", "bob@example.com", "Alice@Example.com"}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d received, %d new, %d duplicates, corpus version %d\n", st.Breach, st.Received, st.NewAccounts, st.Duplicates, st.Version)
	// Output:
	// SegaPass: 3 received, 2 new, 1 duplicates, corpus version 1
}

func ExampleClient_Check() {
	conn, stop := demoServer(map[string][]string{"SegaPass": {"alice@example.com"}})
	defer stop()

	c := client.New(conn)
	for _, email := range []string{" Alice@Example.com", "bob@example.com"} {
		r, err := c.Check(context.Background(), email)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%q exposed=%v", email, r.Exposed)
		for _, b := range r.Breaches {
			fmt.Printf(" in %s (%s) %v", b.Name, b.BreachDate, b.DataClasses)
		}
		fmt.Println()
	}
	// Output:
	// " Alice@Example.com" exposed=true in SegaPass (2011-06-17) [Email addresses Passwords]
	// "bob@example.com" exposed=false
}

func ExampleClient_CheckDigests() {
	conn, stop := demoServer(map[string][]string{
		"Alpha": {"a@example.com", "both@example.com"},
		"Beta":  {"b@example.com", "both@example.com"},
	})
	defer stop()

	emails := []string{"a@example.com", "nobody@example.com", "both@example.com", "b@example.com"}
	digests := func(yield func(breachd.Digest) bool) {
		for _, e := range emails {
			d, _ := canon.Digest(e)
			if !yield(d) {
				return
			}
		}
	}
	c := client.New(conn, client.WithBatchSize(2), client.WithInFlight(2))
	for r, err := range c.CheckDigests(context.Background(), digests) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(emails[r.Index], r.Exposed, r.BreachNames)
	}
	// Output:
	// a@example.com true [Alpha]
	// nobody@example.com false []
	// both@example.com true [Alpha Beta]
	// b@example.com true [Beta]
}
