package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/server"
)

// A daemon without TLS authenticates no one, so over TCP it serves no
// AdminService: any local process could otherwise delete a breach. Its
// admin calls go through a unix socket instead (Config.AdminSocket, the
// convention of containerd and Docker), which the file system guards: the
// socket is made 0600 (owner only) or, with AdminSocketGroup, 0660. With
// TLS, admin over TCP needs an API key with the admin scope, and the socket
// may still be used by local operators.

// adminPrefix is the AdminService's method prefix.
var adminPrefix = "/" + breachdv1.AdminService_ServiceDesc.ServiceName + "/"

// refuseAdmin refuses AdminService calls on a listener that authenticates
// no one, saying where to make them.
func refuseAdmin(socket string) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	refusal := func() error {
		where := "start the daemon with --admin-socket PATH and call it at unix://PATH"
		if socket != "" {
			where = "use its admin socket: --addr unix://" + socket
		}
		return status.Errorf(codes.PermissionDenied,
			"this daemon has no TLS, so it authenticates no one and takes no admin calls over TCP: %s (its file permissions decide who may), or serve with TLS and an admin-scoped API key", where)
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if strings.HasPrefix(info.FullMethod, adminPrefix) {
				return nil, refusal()
			}
			return h(ctx, req)
		}, func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if strings.HasPrefix(info.FullMethod, adminPrefix) {
				return refusal()
			}
			return h(srv, ss)
		}
}

// listenAdminSocket listens on the unix socket at path, owner-only (0600)
// or group too (0660). A socket file left by a daemon that died is
// replaced; any other file there is an error.
func listenAdminSocket(path string, group bool) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil { // the data directory, on a first start
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin socket %s: a file that is not a socket is in the way", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s: another daemon is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin socket %s: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w (a unix socket's path must be under 108 bytes)", err)
	}
	mode := os.FileMode(0o600)
	if group {
		mode = 0o660
	}
	// Listen made it with the umask's mode; it serves nothing until Serve,
	// so nothing is admitted before the chmod.
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return ln, nil
}

// serveAdminSocket serves every service, admin included, on the admin
// socket, with the chain's first links (recovery, logging, metrics) and no
// credentials.
func (d *Daemon) serveAdminSocket(unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) error {
	c := d.cfg
	ln, err := listenAdminSocket(c.AdminSocket, c.AdminSocketGroup)
	if err != nil {
		return err
	}
	d.adminLn = ln
	d.adminGS = grpc.NewServer(append(c.Limits.ServerOptions(),
		grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))...)
	d.adminSvcs = server.Register(d.adminGS, d.svc, server.Options{Logger: d.log, Admin: true, ImportIdleTimeout: c.ImportIdleTimeout})
	go func() {
		if err := d.adminGS.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			d.fail(fmt.Errorf("admin socket: %w", err))
		}
	}()
	d.log.Info("admin socket", "path", c.AdminSocket)
	return nil
}
