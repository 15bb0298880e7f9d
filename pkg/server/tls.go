package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
)

// LoadTLS returns the server TLS configuration of a certificate and key in PEM files
// (TLS_CERT_FILE, TLS_KEY_FILE), or nil when both are empty: TLS is off.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// SelfCredentials are the client credentials with which a process dials its own TLS server,
// as the REST facade dials the gRPC port: they accept exactly the certificate the server
// presents (that of cfg), whatever names it holds and whoever signed it. The name check is
// what that pin replaces: only a holder of the private key can present the certificate.
func SelfCredentials(cfg *tls.Config) (credentials.TransportCredentials, error) {
	if len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return nil, errors.New("TLS configuration without a certificate")
	}
	leaf := cfg.Certificates[0].Certificate[0]
	return credentials.NewTLS(&tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, leaf) {
				return errors.New("the server did not present this process's own certificate")
			}
			return nil
		},
	}), nil
}

// ClientTLS returns the client TLS configuration that trusts the certificates in the PEM file
// caFile, or the system's roots when caFile is "".
func ClientTLS(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
