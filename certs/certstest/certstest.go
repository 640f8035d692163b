package certstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// CA is a certificate authority whose certificate is in File.
type CA struct {
	File string
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var (
	serialMu sync.Mutex
	serial   = big.NewInt(time.Now().UnixNano())
)

// nextSerial returns a new serial number, a value of its own: tests issue
// certificates in parallel and keep the serials they were given.
func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serial.Add(serial, big.NewInt(1))
	return new(big.Int).Set(serial)
}

// NewCA makes a CA named name and writes its certificate to dir/name.pem.
func NewCA(tb testing.TB, dir, name string) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{File: filepath.Join(dir, name+".pem"), dir: dir, cert: cert, key: key}
	writePEM(tb, ca.File, "CERTIFICATE", der)
	return ca
}

// Leaf describes a certificate to issue.
type Leaf struct {
	CN     string
	DNS    []string
	IPs    []net.IP
	URIs   []string
	Client bool // for client authentication; else for a server
	// NotBefore and NotAfter bound its validity (zero: from an hour ago
	// to a day from now).
	NotBefore, NotAfter time.Time
	// CA marks it a certificate authority's (basic constraints), as a
	// CA certificate mistaken for a server's would be.
	CA bool
}

// Server is a server certificate for 127.0.0.1, ::1 and localhost.
func Server(cn string) Leaf {
	return Leaf{CN: cn, DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
}

// Issue writes a certificate and key signed by ca to dir/name.pem and
// dir/name-key.pem, replacing any there (as a rotation does), and returns
// their paths and the certificate's serial number.
func (ca *CA) Issue(tb testing.TB, name string, l Leaf) (certFile, keyFile string, serial *big.Int) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if l.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: l.CN},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: l.DNS, IPAddresses: l.IPs,
	}
	if !l.NotBefore.IsZero() {
		tmpl.NotBefore = l.NotBefore
	}
	if !l.NotAfter.IsZero() {
		tmpl.NotAfter = l.NotAfter
	}
	if l.CA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	for _, u := range l.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	// Write the key first and replace each file whole, as a secret update
	// does: a reader sees the old pair or the new one.
	writePEM(tb, keyFile, "EC PRIVATE KEY", kder)
	writePEM(tb, certFile, "CERTIFICATE", der)
	return certFile, keyFile, tmpl.SerialNumber
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}
