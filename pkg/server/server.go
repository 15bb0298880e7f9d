// Package server runs a service's network servers inside its lifecycle: each returns when the
// context ends, after a graceful stop bounded in time.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
)

// ShutdownTimeout bounds a graceful stop.
const ShutdownTimeout = 10 * time.Second

// Check reports whether a dependency is reachable, for /readyz.
type Check func(ctx context.Context) error

// Ops returns the operations handler: /healthz (the process is alive), /readyz (every check
// passes: database and broker reachable), /metrics (Prometheus) and /debug/pprof/.
func Ops(checks map[string]Check) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := Ready(r.Context(), checks); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.Handler())
	// Profiles, for measuring before tuning; the ops port is not meant to face the internet.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// MaxHeaderBytes bounds the request line and headers an HTTP server reads.
const MaxHeaderBytes = 64 << 10

// ServeHTTP serves h on addr until ctx ends, then shuts down gracefully.
func ServeHTTP(ctx context.Context, log *slog.Logger, name, addr string, h http.Handler) error {
	return ServeHTTPTLS(ctx, log, name, addr, h, nil)
}

// ServeHTTPTLS is ServeHTTP over TLS with cfg (HTTP/2 and HTTP/1.1), or without TLS when cfg
// is nil.
func ServeHTTPTLS(ctx context.Context, log *slog.Logger, name, addr string, h http.Handler, cfg *tls.Config) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listen %s: %w", name, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: MaxHeaderBytes}
	errc := make(chan error, 1)
	if cfg != nil {
		srv.TLSConfig = cfg.Clone()
		go func() { errc <- srv.ServeTLS(lis, "", "") }()
	} else {
		go func() { errc <- srv.Serve(lis) }()
	}
	log.InfoContext(ctx, "serving", "server", name, "addr", lis.Addr().String(), "tls", cfg != nil)
	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s shutdown: %w", name, err)
	}
	return nil
}

// ServeGRPC serves srv on addr until ctx ends, then stops gracefully, forcing the stop when
// streams outlive ShutdownTimeout.
func ServeGRPC(ctx context.Context, log *slog.Logger, addr string, srv *grpc.Server) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("grpc listen %s: %w", addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.InfoContext(ctx, "serving", "server", "grpc", "addr", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("grpc: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(ShutdownTimeout):
		srv.Stop()
	}
	return nil
}
