package stack

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBinaries()
	os.Exit(code)
}

func get(addr, path string) (int, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestStack(t *testing.T) {
	testenv.Needs(t, "PostgreSQL and RabbitMQ")
	var dbURLs map[string]string
	var amqpURL string

	t.Run("run", func(t *testing.T) {
		s := Start(t, Options{Replicas: 2})
		dbURLs, amqpURL = s.DatabaseURLs, s.AMQPURL

		seen := map[string]string{}
		for _, svc := range Services {
			for r := range s.Replicas() {
				for _, name := range []string{"ops", "grpc", "http"} {
					a := s.Addr(svc, r, name)
					if a == "" {
						continue
					}
					if other, ok := seen[a]; ok {
						t.Errorf("%s-%d %s and %s share %s", svc, r, name, other, a)
					}
					seen[a] = svc + " " + name
				}
				if code, err := get(s.OpsAddr(svc, r), "/readyz"); err != nil || code != http.StatusOK {
					t.Errorf("%s-%d /readyz: %d %v", svc, r, code, err)
				}
				if pid := s.PID(svc, r); pid <= 0 {
					t.Errorf("%s-%d PID: %d", svc, r, pid)
				}
			}
		}

		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		product := uuid.NewString()
		if _, err := s.InventoryClient().SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: product, Quantity: 3}); err != nil {
			t.Fatalf("SetStock: %v", err)
		}
		_, err := s.OrderClient().GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: uuid.NewString()})
		if status.Code(err) != codes.NotFound {
			t.Errorf("GetOrder of an unknown order: %v, want NotFound", err)
		}

		s.Kill("payment", 1)
		if pid := s.PID("payment", 1); pid != 0 {
			t.Errorf("payment-1 PID after Kill: %d, want 0", pid)
		}
		if _, err := get(s.OpsAddr("payment", 1), "/healthz"); err == nil {
			t.Error("payment-1 answers after Kill")
		}
		s.Restart("payment", 1)
		if code, err := get(s.OpsAddr("payment", 1), "/readyz"); err != nil || code != http.StatusOK {
			t.Errorf("payment-1 /readyz after Restart: %d %v", code, err)
		}

		if err := s.Stop("inventory", 1); err != nil {
			t.Errorf("Stop inventory-1: %v", err)
		}
		if err := s.Stop("inventory", 1); err == nil {
			t.Error("Stop of a stopped process reported success")
		}
		s.Restart("inventory", 1)

		// A paused replica answers nothing until resumed, and one paused when stopped still exits
		// cleanly.
		if err := s.Pause("shipping", 1); err != nil {
			t.Fatalf("Pause shipping-1: %v", err)
		}
		if _, err := (&http.Client{Timeout: time.Second}).Get("http://" + s.OpsAddr("shipping", 1) + "/healthz"); err == nil {
			t.Error("shipping-1 answers while paused")
		}
		if err := s.Resume("shipping", 1); err != nil {
			t.Fatalf("Resume shipping-1: %v", err)
		}
		if code, err := get(s.OpsAddr("shipping", 1), "/healthz"); err != nil || code != http.StatusOK {
			t.Errorf("shipping-1 /healthz after Resume: %d %v", code, err)
		}
		if err := s.Pause("shipping", 1); err != nil {
			t.Fatalf("Pause shipping-1: %v", err)
		}
		if err := s.Stop("shipping", 1); err != nil {
			t.Errorf("Stop of a paused shipping-1: %v", err)
		}
		s.Restart("shipping", 1)

		// Replica 0 of order was never touched; replica 1 is a working order-service too.
		resp, err := s.OrderClient().CreateOrder(ctx, &orderv1.CreateOrderRequest{
			CustomerId:    uuid.NewString(),
			PaymentMethod: "credit_card",
			Items:         []*orderv1.LineItem{{ProductId: product, Quantity: 1, UnitPrice: "1.00"}},
		})
		if err != nil {
			t.Fatalf("CreateOrder: %v", err)
		}
		if code, err := get(s.Addr("order", 1, "http"), "/v1/orders/"+resp.GetOrder().GetOrderId()); err != nil || code != http.StatusOK {
			t.Errorf("GET order on order-1: %d %v", code, err)
		}

		b, err := os.ReadFile(s.LogPath("payment", 1))
		if err != nil || strings.Count(string(b), "---- stack: starting payment-1") != 2 {
			t.Errorf("payment-1 log does not show two starts: %v", err)
		}
	})

	// Everything the stack created is gone once its test ended.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for svc, u := range dbURLs {
		cfg, err := pgx.ParseConfig(u)
		if err != nil {
			t.Fatal(err)
		}
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", cfg.Database).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database of %s (%s) left behind", svc, cfg.Database)
		}
	}
	exists, err := testenv.VHostExists(ctx, amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("vhost of %s left behind", amqpURL)
	}
}

// TestPlanSpreadsOverBrokerNodes checks that on a broker of several nodes every process lists
// every node, each starting from the node after the previous process's, with the stack's vhost.
func TestPlanSpreadsOverBrokerNodes(t *testing.T) {
	b := &Broker{AMQPURLs: []string{"amqp://u:p@127.0.0.1:5701/", "amqp://u:p@127.0.0.1:5702/", "amqp://u:p@127.0.0.1:5703/"}}
	nodes, err := b.urls("amqp://u:p@127.0.0.1:5701/stack_x")
	if err != nil {
		t.Fatal(err)
	}
	s := &Stack{nodeURLs: nodes, DatabaseURLs: map[string]string{}, procs: map[string][]*process{}, logDir: t.TempDir()}
	if err := s.plan("/nonexistent", Options{Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	k := 0
	firsts := map[string]int{}
	for _, svc := range Services {
		for r, p := range s.procs[svc] {
			got := strings.Split(p.env["AMQP_URL"], ",")
			if len(got) != len(nodes) {
				t.Fatalf("%s-%d: AMQP_URL %q, want all %d nodes", svc, r, p.env["AMQP_URL"], len(nodes))
			}
			for i, u := range got {
				if want := nodes[(k+i)%len(nodes)]; u != want {
					t.Errorf("%s-%d: node %d is %s, want %s", svc, r, i, u, want)
				}
			}
			if !strings.HasSuffix(got[0], "/stack_x") {
				t.Errorf("%s-%d: %s is not on the stack's vhost", svc, r, got[0])
			}
			firsts[got[0]]++
			k++
		}
	}
	// 8 processes over 3 nodes: 3, 3 and 2 start on each.
	for _, n := range nodes {
		if firsts[n] < 2 {
			t.Errorf("%d processes start on %s, want at least 2: %v", firsts[n], n, firsts)
		}
	}
}

// TestPlanViaProxy checks that BrokerVia and PostgresVia change only the host:port the
// services are given, and that the stack's own URLs stay direct.
func TestPlanViaProxy(t *testing.T) {
	s := &Stack{
		AMQPURL:      "amqp://u:p@127.0.0.1:5672/stack_x",
		nodeURLs:     []string{"amqp://u:p@127.0.0.1:5672/stack_x"},
		DatabaseURLs: map[string]string{},
		procs:        map[string][]*process{},
		logDir:       t.TempDir(),
	}
	for _, svc := range Services {
		s.DatabaseURLs[svc] = "postgres://postgres@127.0.0.1:5432/test_" + svc + "?sslmode=disable"
	}
	if err := s.plan("/nonexistent", Options{Replicas: 1, BrokerVia: "127.0.0.1:7001", PostgresVia: "127.0.0.1:7002", AMQPParams: "heartbeat=3"}); err != nil {
		t.Fatal(err)
	}
	for _, svc := range Services {
		env := s.procs[svc][0].env
		if got, want := env["AMQP_URL"], "amqp://u:p@127.0.0.1:7001/stack_x?heartbeat=3"; got != want {
			t.Errorf("%s AMQP_URL %q, want %q", svc, got, want)
		}
		db := env[strings.ToUpper(svc)+"_DATABASE_URL"]
		if want := "postgres://postgres@127.0.0.1:7002/test_" + svc + "?sslmode=disable"; db != want {
			t.Errorf("%s database URL %q, want %q", svc, db, want)
		}
		if !strings.Contains(s.DatabaseURLs[svc], ":5432/") {
			t.Errorf("the stack's own %s URL changed: %s", svc, s.DatabaseURLs[svc])
		}
	}
}

// A replica started later runs beside the others on the same database, and the stack's client
// follows UseReplica off a replica that is then stopped: a rolling update's steps.
func TestStackStartReplica(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := s.StartReplica(ctx, "inventory", t.TempDir()); err == nil {
		t.Error("StartReplica from a directory without binaries succeeded")
	}
	r, err := s.StartReplica(ctx, "inventory", "")
	if err != nil {
		t.Fatalf("StartReplica: %v", err)
	}
	if r != 1 {
		t.Errorf("StartReplica: replica %d, want 1", r)
	}
	if s.Addr("inventory", 1, "grpc") == s.Addr("inventory", 0, "grpc") {
		t.Errorf("both inventory replicas serve on %s", s.Addr("inventory", 0, "grpc"))
	}
	if code, err := get(s.OpsAddr("inventory", 1), "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("inventory-1 /readyz: %d %v", code, err)
	}
	product := uuid.NewString()
	if _, err := s.InventoryClient().SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: product, Quantity: 3}); err != nil {
		t.Fatalf("SetStock on inventory-0: %v", err)
	}
	if err := s.UseReplica("inventory", 1); err != nil {
		t.Fatalf("UseReplica: %v", err)
	}
	if err := s.Stop("inventory", 0); err != nil {
		t.Errorf("Stop inventory-0: %v", err)
	}
	if s.InventoryGRPC != s.Addr("inventory", 1, "grpc") {
		t.Errorf("InventoryGRPC %s, want inventory-1's %s", s.InventoryGRPC, s.Addr("inventory", 1, "grpc"))
	}
	st, err := s.InventoryClient().GetStock(ctx, &inventoryv1.GetStockRequest{ProductId: product})
	if err != nil || st.GetStock().GetAvailable() != 3 {
		t.Errorf("GetStock on inventory-1, same database: %v %v", st, err)
	}
}
