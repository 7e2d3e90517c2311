package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a certificate authority made for one test, with a server
// certificate for 127.0.0.1 and a client certificate, written as PEM files.
type PKI struct {
	CAFile, ClientCertFile, ClientKeyFile string
	// Server is the TLS configuration of a broker; with RequireClientCert
	// it asks for a client certificate signed by the authority.
	Server *tls.Config
	pool   *x509.CertPool
}

// NewPKI creates the authority and its certificates in t.TempDir().
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test authority"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, name string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	serverDER, serverKey := issue(2, "broker", x509.ExtKeyUsageServerAuth)
	clientDER, clientKey := issue(3, "kafka-connector", x509.ExtKeyUsageClientAuth)

	p := &PKI{
		CAFile:         writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER),
		ClientCertFile: writePEM(t, dir, "client.pem", "CERTIFICATE", clientDER),
		ClientKeyFile:  writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", marshalKey(t, clientKey)),
		pool:           x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	p.Server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}},
		ClientCAs:    p.pool,
		MinVersion:   tls.VersionTLS12,
	}
	return p
}

// RequireClientCert returns the server configuration of a broker that
// accepts only clients with a certificate from the authority.
func (p *PKI) RequireClientCert() *tls.Config {
	c := p.Server.Clone()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c
}

// ClientConfig is a TLS configuration for the test's own Kafka client.
func (p *PKI) ClientConfig(t testing.TB) *tls.Config {
	cert, err := tls.LoadX509KeyPair(p.ClientCertFile, p.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func marshalKey(t testing.TB, k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writePEM(t testing.TB, dir, name, kind string, der []byte) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
