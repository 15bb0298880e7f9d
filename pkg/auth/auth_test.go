package auth_test

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/auth/authtest"
)

// echo answers with the caller it found: its subject as the customer id, its scopes as the
// payment method.
type echo struct {
	orderv1.UnimplementedOrderServiceServer
}

func caller(ctx context.Context) *orderv1.Order {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return &orderv1.Order{CustomerId: "(nobody)"}
	}
	return &orderv1.Order{CustomerId: p.Subject, PaymentMethod: strings.Join(p.Scopes, ",")}
}

func (echo) GetOrder(ctx context.Context, _ *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	return &orderv1.GetOrderResponse{Order: caller(ctx)}, nil
}

func (echo) WatchOrder(_ *orderv1.WatchOrderRequest, s orderv1.OrderService_WatchOrderServer) error {
	return s.Send(&orderv1.WatchOrderResponse{Order: caller(s.Context())})
}

// serve runs echo with token checks requiring scope on a free port and returns a connection.
func serve(t *testing.T, v *auth.Verifier, scope string) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(auth.ServerOptions(v, scope)...)
	orderv1.RegisterOrderServiceServer(srv, echo{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func issuer(t *testing.T) (*authtest.TokenIssuer, *auth.Verifier) {
	t.Helper()
	iss, err := authtest.NewIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(context.Background(), auth.Config{
		JWKSFile: iss.JWKSFile, Issuer: authtest.Issuer, Audience: authtest.Audience,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return iss, v
}

// call makes a unary and a streaming call with the authorization values given, and returns
// the caller the server saw (nil on error) and the status of each.
func call(t *testing.T, conn *grpc.ClientConn, authorization ...string) (unary, stream *orderv1.Order, unaryErr, streamErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range authorization {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
	}
	c := orderv1.NewOrderServiceClient(conn)
	if resp, err := c.GetOrder(ctx, &orderv1.GetOrderRequest{}); err == nil {
		unary = resp.GetOrder()
	} else {
		unaryErr = err
	}
	s, err := c.WatchOrder(ctx, &orderv1.WatchOrderRequest{})
	if err == nil {
		var resp *orderv1.WatchOrderResponse
		if resp, err = s.Recv(); err == nil {
			stream = resp.GetOrder()
		}
	}
	return unary, stream, unaryErr, err
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	iss, v := issuer(t)
	conn := serve(t, v, "")
	sub := "123e4567-e89b-12d3-a456-426614174000"
	hs256, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "iss": authtest.Issuer, "aud": authtest.Audience, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte("guessed secret"))
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
		"sub": sub, "iss": authtest.Issuer, "aud": authtest.Audience, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	good := iss.Token(authtest.Claims{Subject: sub})
	// A token naming a key the JWKS does not hold.
	head, rest, _ := strings.Cut(good, ".")
	unknownKid := strings.Replace(head, head, jwtHeader(t, `{"alg":"ES256","kid":"other","typ":"JWT"}`), 1) + "." + rest
	for _, tc := range []struct {
		name          string
		authorization []string
		why           string
	}{
		{"no token", nil, "no bearer token"},
		{"not bearer", []string{"Basic dXNlcjpwYXNz"}, "Bearer"},
		{"empty bearer", []string{"Bearer "}, "Bearer"},
		{"garbage", []string{"Bearer not.a.token"}, "malformed"},
		{"expired", []string{"Bearer " + iss.Token(authtest.Claims{Subject: sub, ExpiresIn: -time.Hour})}, "expired"},
		{"wrongly signed", []string{"Bearer " + iss.ForeignToken(authtest.Claims{Subject: sub})}, "signature is invalid"},
		{"wrong issuer", []string{"Bearer " + iss.Token(authtest.Claims{Subject: sub, Issuer: "https://evil.test"})}, "issuer"},
		{"wrong audience", []string{"Bearer " + iss.Token(authtest.Claims{Subject: sub, Audience: "another-api"})}, "audience"},
		{"no subject", []string{"Bearer " + iss.Token(authtest.Claims{})}, "sub"},
		{"shared secret", []string{"Bearer " + hs256}, "signature is invalid"},
		{"alg none", []string{"Bearer " + none}, "signature is invalid"},
		{"unknown key", []string{"Bearer " + unknownKid}, "unverifiable"},
		{"two tokens", []string{"Bearer " + good, "Bearer " + good}, "more than one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, uerr, serr := call(t, conn, tc.authorization...)
			for kind, err := range map[string]error{"unary": uerr, "stream": serr} {
				st := status.Convert(err)
				if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), tc.why) {
					t.Errorf("%s: %s %q, want UNAUTHENTICATED saying %q", kind, st.Code(), st.Message(), tc.why)
				}
			}
		})
	}

	// Accepted, and the handler sees who called, over both kinds of call.
	u, s, uerr, serr := call(t, conn, "bearer "+iss.Token(authtest.Claims{Subject: sub, Scopes: []string{"a", "orders:admin"}}))
	if uerr != nil || serr != nil || u.GetCustomerId() != sub || s.GetCustomerId() != sub || u.GetPaymentMethod() != "a,orders:admin" {
		t.Fatalf("good token: %v %v / %v %v", u, uerr, s, serr)
	}

	// Health and reflection answer without a token.
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health: %v", err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err == nil {
		err = rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	}
	if err == nil {
		_, err = rs.Recv()
	}
	if err != nil {
		t.Errorf("reflection: %v", err)
	}
}

func jwtHeader(t *testing.T, header string) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString([]byte(header))
}

func TestScopeRequired(t *testing.T) {
	t.Parallel()
	iss, v := issuer(t)
	conn := serve(t, v, auth.ScopeInventoryAdmin)
	for _, scopes := range [][]string{nil, {auth.ScopeOrdersAdmin}, {"inventory:admin:x"}} {
		_, _, uerr, serr := call(t, conn, "Bearer "+iss.Token(authtest.Claims{Subject: "ops", Scopes: scopes}))
		if status.Code(uerr) != codes.PermissionDenied || status.Code(serr) != codes.PermissionDenied {
			t.Errorf("scopes %v: %v / %v, want PERMISSION_DENIED", scopes, uerr, serr)
		}
	}
	u, s, uerr, serr := call(t, conn, "Bearer "+iss.Token(authtest.Claims{Subject: "ops", Scopes: []string{"x", auth.ScopeInventoryAdmin}}))
	if uerr != nil || serr != nil || u.GetCustomerId() != "ops" || s.GetCustomerId() != "ops" {
		t.Errorf("with the scope: %v %v / %v %v", u, uerr, s, serr)
	}
}

func TestJWKSURL(t *testing.T) {
	t.Parallel()
	iss, err := authtest.NewIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := os.ReadFile(iss.JWKSFile)
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	defer web.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := auth.NewVerifier(ctx, auth.Config{JWKSURL: web.URL, Issuer: authtest.Issuer, Audience: authtest.Audience}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(iss.Token(authtest.Claims{Subject: "c"})); err != nil || p.Subject != "c" {
		t.Errorf("Verify: %v %v", p, err)
	}
	if _, err := v.Verify(iss.ForeignToken(authtest.Claims{Subject: "c"})); err == nil {
		t.Error("a wrongly signed token verified")
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	iss, err := authtest.NewIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte(`{"keys": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if (auth.Config{Issuer: "i", Audience: "a"}).Enabled() {
		t.Error("enabled without keys")
	}
	for name, cfg := range map[string]auth.Config{
		"no issuer":   {JWKSFile: iss.JWKSFile, Audience: "a"},
		"no audience": {JWKSFile: iss.JWKSFile, Issuer: "i"},
		"both":        {JWKSFile: iss.JWKSFile, JWKSURL: "https://keys.test/jwks.json", Issuer: "i", Audience: "a"},
		"no file":     {JWKSFile: filepath.Join(dir, "missing.json"), Issuer: "i", Audience: "a"},
		"no keys":     {JWKSFile: empty, Issuer: "i", Audience: "a"},
		"not JWKS":    {JWKSFile: "/dev/null", Issuer: "i", Audience: "a"},
	} {
		if _, err := auth.NewVerifier(context.Background(), cfg, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
