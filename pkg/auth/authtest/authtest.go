// Package authtest is a token issuer and a certificate authority for tests: keys are generated
// when a test runs and never leave its temporary directory.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"

	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer and audience of the tokens an Issuer signs.
const (
	Issuer   = "https://issuer.test"
	Audience = "ordersaga-test"
)

// TokenIssuer signs tokens with an ECDSA P-256 key whose public half it publishes as a JWKS file.
type TokenIssuer struct {
	JWKSFile string // the JWKS with the public key, for AUTH_JWKS_FILE
	key      *ecdsa.PrivateKey
	kid      string
	stranger *ecdsa.PrivateKey // signs under the same kid, but is not in the JWKS
}

// NewIssuer generates a key and writes its JWKS into dir.
func NewIssuer(dir string) (*TokenIssuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	iss := &TokenIssuer{JWKSFile: filepath.Join(dir, "jwks.json"), key: key, kid: "test-key-1", stranger: stranger}
	pub, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": iss.kid,
		"x": b64(pub[1:33]), "y": b64(pub[33:]),
	}}})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(iss.JWKSFile, jwks, 0o600); err != nil {
		return nil, err
	}
	return iss, nil
}

// Env is the environment that makes a service check this issuer's tokens.
func (i *TokenIssuer) Env() map[string]string {
	return map[string]string{"AUTH_JWKS_FILE": i.JWKSFile, "AUTH_ISSUER": Issuer, "AUTH_AUDIENCE": Audience}
}

// Claims are what a token says; zero values get defaults in Token.
type Claims struct {
	Subject   string
	Scopes    []string
	Issuer    string        // default Issuer
	Audience  string        // default Audience
	ExpiresIn time.Duration // default an hour; negative for an expired token
}

// Token returns a token with c, signed with the published key.
func (i *TokenIssuer) Token(c Claims) string { return i.sign(i.key, c) }

// ForeignToken returns a token with c under the published kid, signed with a key that is not
// published: its signature does not verify.
func (i *TokenIssuer) ForeignToken(c Claims) string { return i.sign(i.stranger, c) }

func (i *TokenIssuer) sign(key *ecdsa.PrivateKey, c Claims) string {
	now := time.Now()
	if c.Issuer == "" {
		c.Issuer = Issuer
	}
	if c.Audience == "" {
		c.Audience = Audience
	}
	if c.ExpiresIn == 0 {
		c.ExpiresIn = time.Hour
	}
	claims := jwt.MapClaims{
		"sub": c.Subject,
		"iss": c.Issuer,
		"aud": c.Audience,
		"iat": now.Add(-time.Minute).Unix(),
		"exp": now.Add(c.ExpiresIn).Unix(),
	}
	if c.ExpiresIn < 0 {
		claims["iat"] = now.Add(c.ExpiresIn - time.Hour).Unix()
	}
	if len(c.Scopes) > 0 {
		claims["scope"] = strings.Join(c.Scopes, " ")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = i.kid
	s, err := t.SignedString(key)
	if err != nil {
		panic(err) // an in-memory ECDSA key cannot fail to sign
	}
	return s
}

// Certificate is a self-signed server certificate for localhost and 127.0.0.1, written as PEM
// files for TLS_CERT_FILE and TLS_KEY_FILE.
type Certificate struct {
	CertFile, KeyFile string
	Pool              *x509.CertPool // trusts the certificate, for clients
}

// NewCertificate generates a certificate and its key into dir.
func NewCertificate(dir string) (*Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "ordersaga test"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	c := &Certificate{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Pool: x509.NewCertPool()}
	if err := os.WriteFile(c.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c.Pool.AddCert(cert)
	return c, nil
}

// Env is the environment that turns TLS on with this certificate.
func (c *Certificate) Env() map[string]string {
	return map[string]string{"TLS_CERT_FILE": c.CertFile, "TLS_KEY_FILE": c.KeyFile}
}

// ClientConfig trusts only this certificate.
func (c *Certificate) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.Pool, MinVersion: tls.VersionTLS12}
}

// Merge returns the union of environments, later ones winning.
func Merge(envs ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, e := range envs {
		for k, v := range e {
			out[k] = v
		}
	}
	return out
}
