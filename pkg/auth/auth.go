// Package auth checks bearer tokens on gRPC servers: a JWT signed by a key of a JWKS (a file or
// a URL), from the configured issuer, for the configured audience. The token's sub is the
// caller (for order-service, the customer id); its space-separated scope claim carries the
// rights beyond the caller's own orders. Health and reflection stay open.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// Scopes of the saga's APIs (fixed: DESIGN.md, "Who may do what").
const (
	ScopeOrdersAdmin    = "orders:admin"    // read and list any customer's orders
	ScopeInventoryAdmin = "inventory:admin" // the inventory admin API
)

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = 30 * time.Second

// Signing algorithms accepted: asymmetric only, so that a public JWKS can never verify a token
// an outsider made with a shared secret (and "none" is never accepted).
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Config turns token checks on. Token checks are off when both JWKSFile and JWKSURL are empty.
type Config struct {
	JWKSFile string // AUTH_JWKS_FILE: the JWKS on disk, read once at start
	JWKSURL  string // AUTH_JWKS_URL: the JWKS over HTTPS, refreshed hourly and on an unknown kid
	Issuer   string // AUTH_ISSUER: the iss every token must carry
	Audience string // AUTH_AUDIENCE: an aud every token must carry
}

// Enabled reports whether c asks for token checks.
func (c Config) Enabled() bool { return c.JWKSFile != "" || c.JWKSURL != "" }

// Principal is the verified caller of a request.
type Principal struct {
	Subject string   // the token's sub: for order-service, the customer id
	Scopes  []string // the token's scope claim, split on spaces
}

// HasScope reports whether the caller was granted scope.
func (p *Principal) HasScope(scope string) bool { return slices.Contains(p.Scopes, scope) }

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the verified caller of the request, and false when token checks are off.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

// Errors of Verify; the interceptors report each as UNAUTHENTICATED with its text.
var (
	ErrNoToken      = errors.New("no bearer token")
	ErrInvalidToken = errors.New("invalid token")
)

// Verifier checks tokens against the keys, issuer and audience of a Config.
type Verifier struct {
	keys   jwt.Keyfunc
	parser *jwt.Parser
}

// NewVerifier loads the keys of cfg. With a URL, keys are fetched in the background until ctx
// ends; a JWKS that cannot be fetched at start is retried, and tokens are refused meanwhile.
func NewVerifier(ctx context.Context, cfg Config, log *slog.Logger) (*Verifier, error) {
	switch {
	case !cfg.Enabled():
		return nil, errors.New("auth: neither AUTH_JWKS_FILE nor AUTH_JWKS_URL is set")
	case cfg.JWKSFile != "" && cfg.JWKSURL != "":
		return nil, errors.New("auth: set one of AUTH_JWKS_FILE and AUTH_JWKS_URL, not both")
	case cfg.Issuer == "":
		return nil, errors.New("auth: AUTH_ISSUER must be set when tokens are checked")
	case cfg.Audience == "":
		return nil, errors.New("auth: AUTH_AUDIENCE must be set when tokens are checked")
	}
	if log == nil {
		log = slog.Default()
	}
	var (
		kf  keyfunc.Keyfunc
		err error
	)
	if cfg.JWKSFile != "" {
		raw, rerr := os.ReadFile(cfg.JWKSFile)
		if rerr != nil {
			return nil, fmt.Errorf("auth: read AUTH_JWKS_FILE: %w", rerr)
		}
		if kf, err = keyfunc.NewJWKSetJSON(raw); err != nil {
			return nil, fmt.Errorf("auth: AUTH_JWKS_FILE %s: %w", cfg.JWKSFile, err)
		}
		if keys, err := kf.Storage().KeyReadAll(ctx); err != nil || len(keys) == 0 {
			return nil, fmt.Errorf("auth: AUTH_JWKS_FILE %s holds no usable key", cfg.JWKSFile)
		}
	} else {
		kf, err = keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
			HTTPTimeout: 10 * time.Second,
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(ctx context.Context, err error) {
					log.WarnContext(ctx, "refreshing the JWKS failed", "url", u, "err", err)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("auth: AUTH_JWKS_URL: %w", err)
		}
	}
	return &Verifier{
		keys: kf.Keyfunc,
		parser: jwt.NewParser(
			jwt.WithValidMethods(Algorithms),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(Leeway),
		),
	}, nil
}

// claims are the claims a token is read into.
type claims struct {
	jwt.RegisteredClaims
	Scope scope `json:"scope"`
}

// scope is the scope claim: a space-separated string (RFC 8693), or a list of strings.
type scope []string

func (s *scope) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = strings.Fields(str)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("scope must be a string or a list of strings")
	}
	*s = list
	return nil
}

// Verify checks a raw JWT and returns its caller. An error wraps ErrInvalidToken and says why
// in a few words that are safe to show the caller.
func (v *Verifier) Verify(raw string) (*Principal, error) {
	var c claims
	if _, err := v.parser.ParseWithClaims(raw, &c, v.keys); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidToken, why(err))
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	return &Principal{Subject: c.Subject, Scopes: c.Scope}, nil
}

// why names what is wrong with a token without echoing it or the keys.
func why(err error) string {
	for _, e := range []error{
		jwt.ErrTokenExpired, jwt.ErrTokenNotValidYet, jwt.ErrTokenUsedBeforeIssued,
		jwt.ErrTokenInvalidIssuer, jwt.ErrTokenInvalidAudience, jwt.ErrTokenRequiredClaimMissing,
		jwt.ErrTokenMalformed, jwt.ErrTokenSignatureInvalid,
	} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	// An unknown kid, a key of the wrong type, a refused algorithm.
	return "token is unverifiable"
}
