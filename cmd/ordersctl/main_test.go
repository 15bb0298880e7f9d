package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/internal/ops/opstest"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// TestCLI builds ordersctl and runs it against a test vhost and four test databases.
func TestCLI(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ordersctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	w := opstest.New(t)
	confirmed := w.Consistent()
	amqpURL := testenv.VHost(t)
	env := append(os.Environ(),
		"AMQP_URL="+amqpURL,
		"ORDER_DATABASE_URL="+w.OrderURL,
		"PAYMENT_DATABASE_URL="+w.PaymentURL,
		"INVENTORY_DATABASE_URL="+w.InventoryURL,
		"SHIPPING_DATABASE_URL="+w.ShippingURL,
	)
	run := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if exitErr := (*exec.ExitError)(nil); errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatalf("ordersctl %s: %v", strings.Join(args, " "), err)
		}
		if code != wantCode {
			t.Fatalf("ordersctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, &stdout, &stderr)
		}
		return stdout.String() + stderr.String()
	}
	mustContain := func(out string, want ...string) {
		t.Helper()
		for _, s := range want {
			if !strings.Contains(out, s) {
				t.Errorf("output lacks %q:\n%s", s, out)
			}
		}
	}

	mustContain(run(0, "help"), "Usage:", "dlq inspect <queue.dlq>", "audit [-since 0]", "order <order-id>")
	mustContain(run(2), "Usage:")
	mustContain(run(2, "frobnicate"), `unknown command "frobnicate"`)
	mustContain(run(2, "dlq", "inspect"), "wants one dead-letter queue")
	mustContain(run(2, "dlq", "replay", "payment.order-created.dlq"), "exactly one of -id and -all")
	mustContain(run(2, "dlq", "inspect", "nope.dlq"), "not a dead-letter queue")
	mustContain(run(2, "order"), "wants one order id")
	mustContain(run(2, "order", "not-a-uuid"), "is not a UUID")

	// Empty queues, consistent databases.
	mustContain(run(0, "dlq", "list"), "payment.order-created.dlq", "total")
	mustContain(run(0, "audit"), "no violations")

	// A dead letter, as a consumer that gave up would leave it.
	eventID, orderID := uuid.NewString(), uuid.NewString()
	conn := deadLetter(t, amqpURL, eventID, orderID)

	out := run(0, "dlq", "list")
	if !regexp.MustCompile(`(?m)^payment\.order-created\.dlq +1$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^total +1$`).MatchString(out) {
		t.Errorf("dlq list:\n%s", out)
	}

	var inspected struct {
		Queue       string           `json:"queue"`
		Depth       int              `json:"depth"`
		DeadLetters []ops.DeadLetter `json:"dead_letters"`
	}
	out = run(0, "dlq", "inspect", "payment.order-created", "-n", "5", "-json")
	if err := json.Unmarshal([]byte(out), &inspected); err != nil {
		t.Fatalf("inspect -json: %v\n%s", err, out)
	}
	if inspected.Queue != "payment.order-created.dlq" || inspected.Depth != 1 || len(inspected.DeadLetters) != 1 {
		t.Fatalf("inspect -json: %+v", inspected)
	}
	if dl := inspected.DeadLetters[0]; dl.MessageID != eventID || dl.CorrelationID != orderID ||
		dl.Reason != "decode failed on purpose" || !strings.Contains(string(dl.Event), orderID) {
		t.Errorf("inspect -json: %+v", dl)
	}
	mustContain(run(0, "dlq", "inspect", "-n", "1", "payment.order-created.dlq"),
		"1 dead letter(s), showing 1", "message id", eventID, "order.v1.OrderCreated",
		"reason", "decode failed on purpose", `"orderId":"`+orderID+`"`)

	// ordersctl order finds the order's dead letter; the order itself is in no database.
	mustContain(run(0, "order", orderID), "not in the order database", "payment.order-created.dlq: "+eventID,
		"decode failed on purpose", "1 (looked at 1 in", "outbox", "none pending")
	var view ops.OrderView
	if err := json.Unmarshal([]byte(run(0, "order", "-json", orderID)), &view); err != nil {
		t.Fatal(err)
	}
	if view.Order != nil || len(view.DeadLetters) != 1 || view.DeadLetters[0].MessageID != eventID || view.TraceID != "" {
		t.Errorf("order -json: %+v", view)
	}
	mustContain(run(2, "order", uuid.NewString()), "order not found in any database or dead-letter queue")
	mustContain(run(0, "order", "-ignore-dlq", confirmed), confirmed, "CONFIRMED", "history", "not looked at")
	if !regexp.MustCompile(`(?m)^trace +-$`).MatchString(run(0, "order", confirmed)) {
		t.Error("order without a traceparent does not print trace -")
	}

	// The audit sees the dead letter unless told to tolerate or ignore it.
	mustContain(run(1, "audit"), "dead-letters", "payment.order-created.dlq holds 1 dead letter(s)", "1 violation(s)")
	mustContain(run(0, "audit", "-allow-dead-letters", "1"), "1 dead letter(s) tolerated", "no violations")
	mustContain(run(0, "audit", "-ignore-dlq"), "no violations")

	mustContain(run(0, "dlq", "replay", "payment.order-created.dlq", "-all"),
		"replayed 1 dead letter(s) from payment.order-created.dlq to payment.order-created")
	if !regexp.MustCompile(`(?m)^total +0$`).MatchString(run(0, "dlq", "list")) {
		t.Error("dead letter still there after replay")
	}
	ch, err := conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if q, err := ch.QueueDeclarePassive("payment.order-created", true, false, false, false, nil); err != nil || q.Messages != 1 {
		t.Errorf("payment.order-created after replay: %+v, %v", q, err)
	}

	// A broken invariant.
	stuck := w.Order("PAYMENT_APPROVED")
	out = run(1, "audit")
	if !regexp.MustCompile(`(?m)^` + stuck + ` +order-not-terminal +status PAYMENT_APPROVED$`).MatchString(out) {
		t.Errorf("audit:\n%s", out)
	}
	var vs []ops.Violation
	if err := json.Unmarshal([]byte(run(1, "audit", "-json", "-ignore-dlq")), &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0] != (ops.Violation{OrderID: stuck, Rule: ops.RuleNotTerminal, Detail: "status PAYMENT_APPROVED"}) {
		t.Errorf("audit -json: %+v", vs)
	}
	// Only orders of the last -since count.
	time.Sleep(1500 * time.Millisecond)
	mustContain(run(0, "audit", "-since", "1s"), "no violations")
	mustContain(run(0, "audit", "-since", time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)), "no violations")
	mustContain(run(1, "audit", "-since", time.Now().Add(-time.Hour).Format(time.RFC3339)), stuck, "order-not-terminal")
	mustContain(run(2, "audit", "-since", "yesterday"), "RFC 3339")

	// Flags win over the environment.
	mustContain(run(2, "-timeout", "2s", "dlq", "list", "-amqp-url", "amqp://guest:guest@127.0.0.1:1/"),
		"connect to broker amqp://guest:xxxxx@127.0.0.1:1/")
	mustContain(run(2, "audit", "-order-db", "postgres://postgres@127.0.0.1:5432/no_such_db_ordersctl?sslmode=disable"),
		"connect to order database")
}

// deadLetter publishes an OrderCreated straight to the dead-letter exchange, with the headers
// a consumer sets when it gives up, and waits until payment.order-created.dlq holds it.
func deadLetter(t *testing.T, amqpURL, eventID, orderID string) *broker.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, amqpURL, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	body, err := proto.Marshal(&orderv1.OrderCreated{EventId: eventID, OrderId: orderID, OccurTime: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	pub := broker.NewPublisher(conn)
	defer pub.Close()
	ok, err := pub.Publish(ctx, []broker.Message{{
		Exchange: broker.DeadLetterExchange, RoutingKey: "payment.order-created",
		MessageID: eventID, Type: "order.v1.OrderCreated", CorrelationID: orderID, Timestamp: time.Now(), Body: body,
		Headers: amqp.Table{
			broker.HeaderReason: "decode failed on purpose", broker.HeaderQueue: "payment.order-created",
			broker.HeaderExchange: catalog.Exchange(catalog.OrderCreated), broker.HeaderRoutingKey: catalog.OrderCreated,
			broker.HeaderFailedAt: time.Now().UTC().Format(time.RFC3339Nano),
		},
	}})
	if err != nil || !ok[0] {
		t.Fatalf("publish dead letter: %v %v", ok, err)
	}
	ch, err := conn.Channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	testenv.Eventually(t, 10*time.Second, "the dead letter", func() bool {
		q, err := ch.QueueDeclarePassive("payment.order-created.dlq", true, false, false, false, nil)
		return err == nil && q.Messages == 1
	})
	return conn
}
