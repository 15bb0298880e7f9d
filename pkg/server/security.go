package server

import (
	"context"
	"crypto/tls"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/config"
)

// Security is how a service guards its API ports (DESIGN.md, "Who may do what"): TLS from
// certificate files and bearer-token checks, each off unless configured. The ops port is never
// guarded.
type Security struct {
	TLS      *tls.Config    // nil: plaintext
	Verifier *auth.Verifier // nil: no token checks
}

// NewSecurity loads the certificate and the token keys that cfg names (config.Security,
// validated by config.Load).
func NewSecurity(ctx context.Context, cfg config.Security, log *slog.Logger) (*Security, error) {
	tlsCfg, err := LoadTLS(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, err
	}
	s := &Security{TLS: tlsCfg}
	authCfg := auth.Config{
		JWKSFile: cfg.AuthJWKSFile,
		JWKSURL:  cfg.AuthJWKSURL,
		Issuer:   cfg.AuthIssuer,
		Audience: cfg.AuthAudience,
	}
	if authCfg.Enabled() {
		if s.Verifier, err = auth.NewVerifier(ctx, authCfg, log); err != nil {
			return nil, err
		}
	}
	log.InfoContext(ctx, "api security", "tls", tlsCfg != nil, "tokens", s.Verifier != nil)
	return s, nil
}

// GRPCOptions are the server options of a gRPC port: TLS credentials, and token checks that
// require scope for every method outside health and reflection ("" for any valid token).
func (s *Security) GRPCOptions(scope string) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if s.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.TLS)))
	}
	if s.Verifier != nil {
		opts = append(opts, auth.ServerOptions(s.Verifier, scope)...)
	}
	return opts
}

// SelfCredentials are the credentials for dialing this process's own gRPC port (nil without
// TLS): see the function SelfCredentials.
func (s *Security) SelfCredentials() (credentials.TransportCredentials, error) {
	if s.TLS == nil {
		return nil, nil
	}
	return SelfCredentials(s.TLS)
}
