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

// docExample is a shell block of the docs that must work as printed, and what its output shows.
type docExample struct {
	file, section string // the first sh block under this heading of this file
	want          []string
}

// docExamples are the README's first order and the API examples of docs/api.md.
var docExamples = []docExample{
	{"README.md", "## A first order", []string{
		"order.v1.OrderService",              // list
		`"status": "ORDER_STATUS_CONFIRMED"`, // gRPC watch and get
		`"status":"ORDER_STATUS_CONFIRMED"`,  // REST watch
		`"tracking_code": "TRK-`,             // REST get through jq
	}},
	{"docs/api.md", "## Examples", []string{
		"rpc WatchOrder",                                      // describe
		"/v1/orders/{order_id}:watch",                         // OpenAPI paths
		"data: {\"order\":{",                                  // REST watch as Server-Sent Events
		`"code":6,"message":"request_id: `,                    // same key, other request
		`"message":"items: must not be empty"`,                // bad input names the field
		`"productId": "6f1c2b7e-0000-4000-8000-000000000042"`, // SetStock
		"payment.order-created.dlq",                           // ordersctl dlq list
		"no violations",                                       // ordersctl audit
	}},
}

// TestDocsExamplesWorkAsPrinted runs the docs' example blocks, each as one shell script, against
// a stack of their own: only the addresses are rewritten to the stack's free ports.
func TestDocsExamplesWorkAsPrinted(t *testing.T) {
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
	scripts := make([]string, len(docExamples))
	for i, ex := range docExamples {
		doc, err := os.ReadFile(filepath.Join(root, ex.file))
		if err != nil {
			t.Fatal(err)
		}
		at := strings.Index(string(doc), "\n"+ex.section+"\n")
		if at < 0 {
			t.Fatalf("%s has no section %q", ex.file, ex.section)
		}
		block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindSubmatch(doc[at:])
		if block == nil {
			t.Fatalf("no sh block under %s in %s", ex.section, ex.file)
		}
		scripts[i] = string(block[1])
	}

	s := stack.Start(t, stack.Options{})
	addresses := strings.NewReplacer(
		"localhost:50051", s.OrderGRPC,
		"localhost:50052", s.InventoryGRPC,
		"localhost:3001", s.OrderHTTP,
	)
	// protojson puts random spaces between fields, so compare without them too.
	compact := strings.NewReplacer(", ", ",", ": ", ":")
	for i, ex := range docExamples {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", addresses.Replace(scripts[i]))
		cmd.Dir = root
		cmd.Env = append(os.Environ(),
			"AMQP_URL="+s.AMQPURL,
			"ORDER_DATABASE_URL="+s.DatabaseURLs["order"],
			"PAYMENT_DATABASE_URL="+s.DatabaseURLs["payment"],
			"INVENTORY_DATABASE_URL="+s.DatabaseURLs["inventory"],
			"SHIPPING_DATABASE_URL="+s.DatabaseURLs["shipping"],
		)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s examples failed: %v\n%s", ex.file, err, out)
			continue
		}
		failed := false
		for _, want := range ex.want {
			if !strings.Contains(string(out), want) && !strings.Contains(compact.Replace(string(out)), compact.Replace(want)) {
				t.Errorf("%s output lacks %q", ex.file, want)
				failed = true
			}
		}
		if failed {
			t.Logf("%s output:\n%s", ex.file, out)
		}
	}
}
