package grpcapi_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/google/uuid"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/inventory/internal/grpcapi"
	"github.com/ordersaga/ordersaga/services/inventory/internal/postgres"
)

type env struct {
	pool   *pgxpool.Pool
	conn   *grpc.ClientConn
	client inventoryv1.InventoryServiceClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := testenv.Postgres(t, "inventory", postgres.Migrations...)
	api := grpcapi.New(postgres.NewRepository(pool), testenv.Logger(t))
	srv := server.NewGRPC(testenv.Logger(t), grpcprom.NewServerMetrics(), health.NewServer(), func(srv *grpc.Server) {
		inventoryv1.RegisterInventoryServiceServer(srv, api)
	}, grpc.MaxRecvMsgSize(grpcapi.MaxRequestBytes))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{pool: pool, conn: conn, client: inventoryv1.NewInventoryServiceClient(conn)}
}

func wantCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("code = %s (%v), want %s", st.Code(), err, code)
	}
	if field != "" && !strings.HasPrefix(st.Message(), field+":") {
		t.Errorf("message %q does not name %s", st.Message(), field)
	}
}

func TestSetAndGetStock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := uuid.NewString()

	set, err := e.client.SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: id, Quantity: 7})
	if err != nil {
		t.Fatalf("SetStock: %v", err)
	}
	want := &inventoryv1.Stock{ProductId: id, Total: 7, Reserved: 0, Available: 7}
	if s := set.GetStock(); s.GetProductId() != want.ProductId || s.GetTotal() != 7 || s.GetAvailable() != 7 {
		t.Errorf("SetStock = %v, want %v", s, want)
	}

	// Hold 3 units, then lower the total: below what is reserved is refused.
	if _, err := e.pool.Exec(ctx, `UPDATE products SET quantity_reserved = 3 WHERE id = $1`, id); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	_, err = e.client.SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: id, Quantity: 2})
	wantCode(t, err, codes.FailedPrecondition, "")
	set, err = e.client.SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: id, Quantity: 3})
	if err != nil {
		t.Fatalf("SetStock to reserved: %v", err)
	}
	if s := set.GetStock(); s.GetTotal() != 3 || s.GetReserved() != 3 || s.GetAvailable() != 0 {
		t.Errorf("SetStock = %v", s)
	}

	got, err := e.client.GetStock(ctx, &inventoryv1.GetStockRequest{ProductId: strings.ToUpper(id)})
	if err != nil {
		t.Fatalf("GetStock: %v", err)
	}
	if s := got.GetStock(); s.GetProductId() != id || s.GetTotal() != 3 || s.GetReserved() != 3 || s.GetAvailable() != 0 {
		t.Errorf("GetStock = %v", s)
	}
}

func TestSeededProducts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for id, total := range map[string]int64{
		"00000000-0000-0000-0000-000000000001": 1000000,
		"00000000-0000-0000-0000-000000000002": 100,
		"00000000-0000-0000-0000-000000000003": 10,
	} {
		got, err := e.client.GetStock(context.Background(), &inventoryv1.GetStockRequest{ProductId: id})
		if err != nil {
			t.Fatalf("GetStock %s: %v", id, err)
		}
		if got.GetStock().GetTotal() != total || got.GetStock().GetAvailable() != total {
			t.Errorf("GetStock %s = %v, want total %d", id, got.GetStock(), total)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()

	_, err := e.client.GetStock(ctx, &inventoryv1.GetStockRequest{ProductId: uuid.NewString()})
	wantCode(t, err, codes.NotFound, "")
	_, err = e.client.GetStock(ctx, &inventoryv1.GetStockRequest{ProductId: "keyboard"})
	wantCode(t, err, codes.InvalidArgument, "product_id")
	_, err = e.client.SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: "", Quantity: 1})
	wantCode(t, err, codes.InvalidArgument, "product_id")
	id := uuid.NewString()
	_, err = e.client.SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: id, Quantity: -1})
	wantCode(t, err, codes.InvalidArgument, "quantity")
	// A refused SetStock creates nothing.
	_, err = e.client.GetStock(ctx, &inventoryv1.GetStockRequest{ProductId: id})
	wantCode(t, err, codes.NotFound, "")
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, svc := range []string{"", "inventory.v1.InventoryService"} {
		resp, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, %v", svc, resp, err)
		}
	}
}
