package ops_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/auth/authtest"
)

type fakeInventory struct {
	inventoryv1.UnimplementedInventoryServiceServer
}

func (fakeInventory) GetStock(_ context.Context, req *inventoryv1.GetStockRequest) (*inventoryv1.GetStockResponse, error) {
	return &inventoryv1.GetStockResponse{Stock: &inventoryv1.Stock{ProductId: req.GetProductId(), Total: 7, Available: 7}}, nil
}

// TestStockOverTLSWithToken: ordersctl reaches an admin API that requires TLS and a token.
func TestStockOverTLSWithToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, err := authtest.NewCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := authtest.NewIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(context.Background(), auth.Config{JWKSFile: iss.JWKSFile, Issuer: authtest.Issuer, Audience: authtest.Audience}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(auth.ServerOptions(v, auth.ScopeInventoryAdmin),
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}})))...)
	inventoryv1.RegisterInventoryServiceServer(srv, fakeInventory{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	admin := iss.Token(authtest.Claims{Subject: "ops", Scopes: []string{auth.ScopeInventoryAdmin}})
	run := func(env map[string]string, args ...string) (int, string) {
		var out bytes.Buffer
		code := ops.Run(context.Background(), args, func(k string) string { return env[k] }, &out, &out)
		return code, out.String()
	}
	env := map[string]string{"ORDERSCTL_INVENTORY_ADDR": lis.Addr().String(), "ORDERSCTL_TLS_CA_FILE": cert.CertFile, "ORDERSCTL_TOKEN": admin}
	if code, out := run(env, "stock", "get", "p1", "-timeout", "10s"); code != ops.ExitOK || !strings.Contains(strings.Join(strings.Fields(out), ""), `"total":"7"`) {
		t.Errorf("stock get: %d %s", code, out)
	}
	env["ORDERSCTL_TOKEN"] = ""
	if code, out := run(env, "stock", "get", "p1", "-timeout", "10s"); code != ops.ExitError || !strings.Contains(out, "Unauthenticated") {
		t.Errorf("without a token: %d %s", code, out)
	}
	if code, out := run(env, "-token", iss.Token(authtest.Claims{Subject: "c"}), "stock", "get", "p1"); code != ops.ExitError || !strings.Contains(out, "PermissionDenied") {
		t.Errorf("without the scope: %d %s", code, out)
	}
	delete(env, "ORDERSCTL_TLS_CA_FILE")
	if code, out := run(env, "-token", admin, "-timeout", "3s", "stock", "get", "p1"); code != ops.ExitError {
		t.Errorf("plaintext to a TLS port: %d %s", code, out)
	}
}
