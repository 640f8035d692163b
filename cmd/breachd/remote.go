package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/server"
	"github.com/breachd/breachd/store"
)

// remoteImport streams an import to a running daemon's AdminService. Digests
// are computed here, so no email address leaves this process.
type remoteImport struct {
	conn   *grpc.ClientConn
	stream grpc.ClientStreamingClient[breachdv1.ImportBreachRequest, breachdv1.ImportBreachResponse]
	cancel context.CancelFunc
	batch  int
	sent   uint64
	packed []byte
}

func beginRemote(ctx context.Context, addr string, b breachd.Breach, batch int) (*remoteImport, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := breachdv1.NewAdminServiceClient(conn).ImportBreach(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("daemon at %s: %w", addr, err)
	}
	r := &remoteImport{conn: conn, stream: stream, cancel: cancel, batch: min(batch, server.MaxBatch)}
	pb := server.BreachToProto(&b)
	if err := r.send(&breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_Breach{Breach: pb}}); err != nil {
		r.Abort()
		return nil, err
	}
	return r, nil
}

// send sends one message; when the server has already ended the stream, it
// returns the server's status rather than io.EOF.
func (r *remoteImport) send(m *breachdv1.ImportBreachRequest) error {
	err := r.stream.Send(m)
	if errors.Is(err, io.EOF) {
		_, err = r.stream.CloseAndRecv()
		if err == nil {
			err = errors.New("daemon ended the import early")
		}
	}
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	return nil
}

func (r *remoteImport) Add(ctx context.Context, ds []breachd.Digest) error {
	for len(ds) > 0 {
		n := min(len(ds), r.batch)
		r.packed = r.packed[:0]
		for i := range ds[:n] {
			r.packed = append(r.packed, ds[i][:]...)
		}
		msg := &breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_EmailSha256{EmailSha256: r.packed}}
		if err := r.send(msg); err != nil {
			return err
		}
		r.sent += uint64(n)
		ds = ds[n:]
	}
	return nil
}

func (r *remoteImport) Commit(ctx context.Context) (store.ImportStats, error) {
	msg := &breachdv1.ImportBreachRequest{Part: &breachdv1.ImportBreachRequest_Commit{Commit: &breachdv1.ImportCommit{DigestCount: r.sent}}}
	if err := r.send(msg); err != nil {
		return store.ImportStats{}, err
	}
	resp, err := r.stream.CloseAndRecv()
	if err != nil {
		return store.ImportStats{}, fmt.Errorf("daemon: %w", err)
	}
	r.Abort() // releases the connection; the import is committed
	return store.ImportStats{Breach: resp.GetName(), Received: resp.GetReceived(), Duplicates: resp.GetDuplicates(),
		NewAccounts: resp.GetNewAccounts(), KnownAccounts: resp.GetKnownAccounts(), Version: resp.GetCorpusVersion()}, nil
}

// Abort cancels the stream (the daemon then drops the import) and closes the
// connection. It is safe to call more than once.
func (r *remoteImport) Abort() {
	r.cancel()
	r.conn.Close()
}
