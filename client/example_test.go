package client_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/canon"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/server"
	"github.com/breachd/breachd/store"
)

// demoServer serves a real store holding each breach's emails on 127.0.0.1
// and returns a connection to it and a function that tears everything down.
func demoServer(breaches map[string][]string) (*grpc.ClientConn, func()) {
	dir, err := os.MkdirTemp("", "breachd-example")
	if err != nil {
		log.Fatal(err)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var names []string
	for name := range breaches {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		imp, err := st.BeginImport(ctx, breachd.Breach{Name: name, Title: name, BreachDate: "2011-06-17", DataClasses: []string{"Email addresses", "Passwords"}})
		if err != nil {
			log.Fatal(err)
		}
		var ds []breachd.Digest
		for _, e := range breaches[name] {
			d, err := canon.Digest(e)
			if err != nil {
				log.Fatal(err)
			}
			ds = append(ds, d)
		}
		if err := imp.Add(ctx, ds); err != nil {
			log.Fatal(err)
		}
		if _, err := imp.Commit(ctx); err != nil {
			log.Fatal(err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := server.New(st, server.Options{})
	go srv.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	return conn, func() {
		conn.Close()
		srv.Shutdown(ctx)
		st.Close()
		os.RemoveAll(dir)
	}
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
