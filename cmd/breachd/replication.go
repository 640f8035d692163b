package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/breachd/breachd/natsrepl"
)

// takeover hands the writer lease of the NATS buckets to the writer whose
// data directory and NATS URL the flags name (serve's flags and
// configuration: --data, --publish, the replication keys).
func takeover(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	c, err := loadProcessConfig("breachd replication takeover", args, stderr)
	if err != nil {
		return err
	}
	if c.Data == "" || c.Replication.Publish == "" {
		fmt.Fprintln(stderr, "usage: breachd replication takeover --data DIR --publish NATS_URL [--config FILE]\n\n"+
			"Makes the writer whose data directory is DIR the one that publishes to the NATS buckets; the writer that held\n"+
			"the lease stops publishing at its next attempt and exits, and replicas ignore anything it still publishes.")
		return errUsage
	}
	if err := c.validate(); err != nil {
		return err
	}
	o, err := c.natsOptions(c.Replication.Publish, log)
	if err != nil {
		return err
	}
	id, err := natsrepl.WriterID(c.Data)
	if err != nil {
		return err
	}
	addr := c.Replication.Advertise
	if addr == "" {
		addr = c.Addr
	}
	old, now, err := natsrepl.Takeover(ctx, o, id, addr)
	if err != nil {
		return fmt.Errorf("takeover of the writer lease of bucket %s: %w", o.KVBucket, err)
	}
	prev := "nobody held it"
	if old != nil {
		prev = "it was held by " + old.String()
	}
	fmt.Fprintf(stdout, "writer lease of bucket %s: now held by %s; %s.\n"+
		"Start this writer with 'breachd serve --data %s --publish %s'. Replicas start again from its first snapshot unless its corpus continues the old writer's.\n",
		o.KVBucket, now, prev, c.Data, c.Replication.Publish)
	return nil
}
