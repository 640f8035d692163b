package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/breachd/breachd/internal/grpccodec"
)

// DialOptions say how to reach a daemon.
type DialOptions struct {
	// TLS turns on TLS with the system's roots; CAFile (PEM) or a client
	// certificate turn it on too.
	TLS      bool
	CAFile   string
	CertFile string // client certificate for mutual TLS, with KeyFile
	KeyFile  string
	// ServerName is the name the daemon's certificate is checked against;
	// "" means the host of the address.
	ServerName string
	// APIKey is sent as 'authorization: Bearer KEY' on every call; only
	// over TLS. Read it with ReadAPIKey, never from a command line.
	APIKey string
}

// Dial returns a connection to the daemon at addr (grpc.NewClient: it
// connects on first use).
func Dial(addr string, o DialOptions) (*grpc.ClientConn, error) {
	secure := o.TLS || o.CAFile != "" || o.CertFile != ""
	if o.APIKey != "" && !secure {
		return nil, errors.New("an API key is only sent over TLS: give the daemon's CA (--ca) or use TLS")
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if secure {
		cfg, err := TLSConfig(o.CAFile, o.CertFile, o.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.ServerName = o.ServerName
		creds := credentials.NewTLS(cfg)
		opts = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	}
	if o.APIKey != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(APIKey(o.APIKey)))
	}
	// Round robin over every address the name resolves to: with a
	// dns:///replicas.example:7355 target, calls spread over the replicas,
	// and a retried call goes to the next one. Daemons close connections
	// after a maximum age, so clients re-resolve as replicas come and go.
	opts = append(opts, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(grpccodec.Codec))) // as CheckStream's, below
	return grpc.NewClient(addr, opts...)
}

// TLSConfig returns a client TLS configuration trusting caFile (PEM; ""
// for the system's roots) and presenting certFile and keyFile if given.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA %s: no PEM certificate in it", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// APIKey returns per-call credentials that send key as a bearer token.
// They refuse to travel over a connection without transport security.
func APIKey(key string) credentials.PerRPCCredentials { return bearer(key) }

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// ReadAPIKey returns the API key from path (its first line), or, when path
// is empty, from the environment variable BREACHD_API_KEY; "" if neither
// gives one. Keys never come from command lines, where other users of the
// machine can read them.
func ReadAPIKey(path string) (string, error) {
	if path == "" {
		return strings.TrimSpace(os.Getenv("BREACHD_API_KEY")), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("API key file: %w", err)
	}
	if bytes.HasPrefix(b, []byte("\xff\xfe")) || bytes.HasPrefix(b, []byte("\xfe\xff")) {
		return "", fmt.Errorf("API key file %s is UTF-16 text (Windows PowerShell's > writes it): save the key as plain text, UTF-8", path)
	}
	key, _, _ := strings.Cut(strings.TrimPrefix(string(b), "\ufeff"), "\n") // a byte order mark: Notepad's
	if key = strings.TrimSpace(key); key == "" {
		return "", fmt.Errorf("API key file %s is empty", path)
	}
	return key, nil
}
