package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// TestReadmeExamplesWorkAsPrinted runs the README's API examples, as one shell script, against a
// stack of their own: only the addresses are rewritten to the stack's free ports.
func TestReadmeExamplesWorkAsPrinted(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"grpcurl", "ordersctl"} {
		if _, err := os.Stat(filepath.Join(root, "bin", tool)); err != nil {
			t.Fatalf("bin/%s is missing: run make build (make test does): %v", tool, err)
		}
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := readme[strings.Index(string(readme), "## Using the API"):]
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindSubmatch(section)
	if block == nil {
		t.Fatal("no sh block under ## Using the API")
	}

	s := stack.Start(t, stack.Options{})
	script := strings.NewReplacer(
		"localhost:50051", s.OrderGRPC,
		"localhost:50052", s.InventoryGRPC,
		"localhost:3001", s.OrderHTTP,
	).Replace(string(block[1]))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"AMQP_URL="+s.AMQPURL,
		"ORDER_DATABASE_URL="+s.DatabaseURLs["order"],
		"PAYMENT_DATABASE_URL="+s.DatabaseURLs["payment"],
		"INVENTORY_DATABASE_URL="+s.DatabaseURLs["inventory"],
		"SHIPPING_DATABASE_URL="+s.DatabaseURLs["shipping"],
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README examples failed: %v\n%s", err, out)
	}
	compact := strings.NewReplacer(", ", ",", ": ", ":")
	for _, want := range []string{
		"order.v1.OrderService",                               // list
		"rpc WatchOrder",                                      // describe
		`"status": "ORDER_STATUS_CONFIRMED"`,                  // gRPC watch and get
		`"status":"ORDER_STATUS_CONFIRMED"`,                   // REST watch
		`"tracking_code": "TRK-`,                              // REST get through jq
		"/v1/orders/{order_id}:watch",                         // OpenAPI paths
		"data: {\"order\":{",                                  // REST watch as Server-Sent Events
		`"code":6,"message":"request_id: `,                    // same key, other request
		`"message":"items: must not be empty"`,                // bad input names the field
		`"productId": "6f1c2b7e-0000-4000-8000-000000000042"`, // SetStock
		"payment.order-created.dlq",                           // ordersctl dlq list
		"no violations",                                       // ordersctl audit
	} {
		// protojson puts random spaces between fields, so compare without them too.
		if !strings.Contains(string(out), want) && !strings.Contains(compact.Replace(string(out)), compact.Replace(want)) {
			t.Errorf("README output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}
