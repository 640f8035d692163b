package natsrepl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
)

// ReadBack is the check the publisher makes of an object it put, and the
// follower of an object before it applies it: that name reads back whole
// as want.
func ReadBack(ctx context.Context, o Options, name string, want []byte) error {
	o.defaults()
	c, err := connect(ctx, "breachd test", o, false)
	if err != nil {
		return err
	}
	defer c.nc.Close()
	sum := sha256.Sum256(want)
	_, err = c.read(ctx, &entry{Object: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(want))}, io.Discard)
	return err
}
