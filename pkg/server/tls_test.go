package server_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ordersaga/ordersaga/pkg/auth/authtest"
	"github.com/ordersaga/ordersaga/pkg/server"
)

func TestLoadTLS(t *testing.T) {
	t.Parallel()
	cert, err := authtest.NewCertificate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := server.LoadTLS("", ""); cfg != nil || err != nil {
		t.Errorf("off: %v %v", cfg, err)
	}
	for _, files := range [][2]string{{cert.CertFile, ""}, {"", cert.KeyFile}, {cert.KeyFile, cert.CertFile}, {"/nonexistent", cert.KeyFile}} {
		if _, err := server.LoadTLS(files[0], files[1]); err == nil {
			t.Errorf("LoadTLS(%q, %q): no error", files[0], files[1])
		}
	}
}

// TestSelfCredentials: the pin accepts the server's own certificate whatever address is
// dialled, and refuses any other certificate.
func TestSelfCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	own, err := authtest.NewCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := authtest.NewCertificate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ownCfg, err := server.LoadTLS(own.CertFile, own.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	otherCfg, err := server.LoadTLS(other.CertFile, other.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := server.SelfCredentials(ownCfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		serverCfg *server.Security
		ok        bool
	}{
		"own certificate":     {&server.Security{TLS: ownCfg}, true},
		"another certificate": {&server.Security{TLS: otherCfg}, false},
	} {
		srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc.serverCfg.TLS)))
		healthpb.RegisterHealthServer(srv, health.NewServer())
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(lis)
		// A name the certificate does not hold: the pin, not the name, decides.
		_, port, _ := net.SplitHostPort(lis.Addr().String())
		conn, err := grpc.NewClient("passthrough:///not-in-the-cert.test:"+port, grpc.WithTransportCredentials(creds),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", lis.Addr().String())
			}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", name, err)
		}
		conn.Close()
		srv.Stop()
	}
}
