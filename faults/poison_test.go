//go:build faults

package faults

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
)

const unknownType = "ordersaga.v1.NoSuchEvent"

// garbage is no protobuf message at all: its first byte is a field tag with an invalid wire type.
var garbage = []byte("\x07 this is not a protobuf message \xff\xfe")

// poison is a message no consumer can handle.
type poison struct {
	id      string
	key     string
	msg     amqp.Publishing
	unknown bool // a valid event under an unknown type, else garbage under the right type
}

// poisons returns a garbage message and one of an unknown type for every routing key.
func poisons(t *testing.T) []poison {
	t.Helper()
	var out []poison
	for _, key := range routingKeys() {
		name := protoreflect.FullName(catalog.MessageType(key))
		mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
		if err != nil {
			t.Fatal(err)
		}
		ev := mt.New()
		id, order := uuid.NewString(), uuid.NewString()
		ev.Set(ev.Descriptor().Fields().ByName("event_id"), protoreflect.ValueOfString(id))
		ev.Set(ev.Descriptor().Fields().ByName("order_id"), protoreflect.ValueOfString(order))
		body, err := proto.Marshal(ev.Interface())
		if err != nil {
			t.Fatal(err)
		}
		msg := amqp.Publishing{
			MessageId: id, CorrelationId: order, Type: unknownType, ContentType: broker.ContentTypeProtobuf,
			DeliveryMode: amqp.Persistent, Timestamp: time.Now(), Body: body,
		}
		out = append(out, poison{id: id, key: key, msg: msg, unknown: true})
		msg.MessageId, msg.Type, msg.Body = uuid.NewString(), string(name), garbage
		out = append(out, poison{id: msg.MessageId, key: key, msg: msg})
	}
	return out
}

// TestFaultPoisonMessages publishes, mid-stream, garbage and a message of an unknown type with
// every routing key on its exchange: each copy lands in the dead-letter queue of every queue it
// reached, with its reason, and the orders flow on undisturbed. Then it exercises ordersctl on
// them: list, inspect, replay (still poison: back to the dead-letter queue) and audit.
func TestFaultPoisonMessages(t *testing.T) {
	e := start(t, stack.Options{})
	pub := e.publisher()
	injected := poisons(t)
	res := e.stream(streamOptions{FaultAt: 5 * time.Second}, func(ctx context.Context) {
		for _, p := range injected {
			if err := pub.publish(ctx, catalog.Exchange(p.key), p.key, p.msg); err != nil {
				t.Errorf("publish poison: %v", err)
				return
			}
		}
		t.Logf("published %d poison messages", len(injected))
	})

	// Every subscription's dead-letter queue gets the two poisons of its routing key.
	want := map[string][]poison{}
	total := 0
	for _, s := range catalog.Subscriptions() {
		for _, p := range injected {
			if p.key == s.RoutingKey {
				want[s.Queue()] = append(want[s.Queue()], p)
				total++
			}
		}
	}
	dl := &deadLetters{failedAt: map[string]string{}, replayed: map[string]bool{}}
	e.waitDeadLetters(want, dl)
	e.verify(res, total)

	// The CLI lists every dead-letter queue with its depth.
	out, code := e.ordersctl("dlq", "list")
	if code != 0 {
		t.Fatalf("ordersctl dlq list: exit %d\n%s", code, out)
	}
	listed := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			listed[f[0]] = f[1]
		}
	}
	for _, s := range catalog.Subscriptions() {
		if listed[s.DeadLetterQueue()] != "2" {
			t.Errorf("ordersctl dlq list: %s has depth %q, want 2\n%s", s.DeadLetterQueue(), listed[s.DeadLetterQueue()], out)
		}
	}
	if listed["total"] != strconv.Itoa(total) {
		t.Errorf("ordersctl dlq list: total %q, want %d\n%s", listed["total"], total, out)
	}

	// Inspect shows both with the reason; replaying the garbage brings it back, still garbage.
	queue := catalog.Subscriptions()[0].Queue()
	dlq := queue + ".dlq"
	out, code = e.ordersctl("dlq", "inspect", dlq)
	if code != 0 {
		t.Fatalf("ordersctl dlq inspect: exit %d\n%s", code, out)
	}
	for _, p := range want[queue] {
		if !strings.Contains(out, p.id) {
			t.Errorf("ordersctl dlq inspect %s does not show %s:\n%s", dlq, p.id, out)
		}
	}
	if !strings.Contains(out, "reason") || !strings.Contains(out, "undecodable") {
		t.Errorf("ordersctl dlq inspect %s shows no reason or undecodable payload:\n%s", dlq, out)
	}
	junk := want[queue][slices.IndexFunc(want[queue], func(p poison) bool { return !p.unknown })]
	out, code = e.ordersctl("dlq", "replay", dlq, "-id", junk.id)
	if code != 0 || !strings.Contains(out, "replayed 1 ") {
		t.Fatalf("ordersctl dlq replay: exit %d\n%s", code, out)
	}
	e.waitDeadLetters(want, dl, letterKey(queue, junk.id))

	// Replaying a whole queue with the library works the same way.
	queue = catalog.Subscriptions()[len(catalog.Subscriptions())-1].Queue()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if n, err := ops.Replay(ctx, e.broker(), queue+".dlq", ""); err != nil || n != 2 {
		t.Fatalf("replay %s.dlq: %d, %v", queue, n, err)
	}
	e.waitDeadLetters(want, dl, letterKey(queue, want[queue][0].id), letterKey(queue, want[queue][1].id))

	// The audit passes with exactly the injected dead letters allowed, and fails without.
	e.audit(total)
	allow := strconv.Itoa(total)
	if out, code := e.ordersctl("audit", "-allow-dead-letters", allow); code != 0 || !strings.Contains(out, "no violations") {
		t.Errorf("ordersctl audit -allow-dead-letters %s: exit %d\n%s", allow, code, out)
	}
	if out, code := e.ordersctl("audit"); code != 1 || !strings.Contains(out, ops.RuleDeadLetters) {
		t.Errorf("ordersctl audit: exit %d, want 1 with %s\n%s", code, ops.RuleDeadLetters, out)
	}
}

// deadLetters is what a test knows of the dead letters it made, by letterKey.
type deadLetters struct {
	failedAt map[string]string // when each failed last
	replayed map[string]bool   // ever replayed
}

// waitDeadLetters waits until every queue's dead-letter queue holds exactly its poisons, each
// dead-lettered by its consumer with the reason. The dead letters in again (letter keys) were
// just replayed: they must have failed again since.
func (e *env) waitDeadLetters(want map[string][]poison, dl *deadLetters, again ...string) {
	e.t.Helper()
	for _, k := range again {
		dl.replayed[k] = true
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), time.Minute)
	defer cancel()
	for queue, poisons := range want {
		var problem string
		for {
			letters, err := ops.Peek(ctx, e.broker(), queue+".dlq", len(poisons)+1)
			if ctx.Err() != nil {
				break
			}
			if err != nil {
				problem = err.Error()
			} else if problem = dl.check(queue, poisons, letters, again); problem == "" {
				for _, l := range letters {
					dl.failedAt[letterKey(queue, l.MessageID)] = l.FailedAt
				}
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if problem != "" {
			e.t.Fatalf("%s.dlq: %s", queue, problem)
		}
	}
	// A quorum queue takes peeked messages back asynchronously: until it has, they are missing
	// from its depth, and a replay started then would not see them.
	for {
		depths, err := ops.DeadLetterQueues(ctx, e.broker())
		if err != nil {
			e.t.Fatalf("dead-letter queues: %v", err)
		}
		if !slices.ContainsFunc(depths, func(q ops.QueueDepth) bool { return q.Depth != len(want[q.Source]) }) {
			return
		}
		if ctx.Err() != nil {
			e.t.Fatalf("dead-letter queue depths: %+v", depths)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check says what is wrong with a queue's dead letters, or returns "".
func (dl *deadLetters) check(queue string, poisons []poison, letters []ops.DeadLetter, again []string) string {
	if len(letters) != len(poisons) {
		return fmt.Sprintf("holds %d dead letters, want %d", len(letters), len(poisons))
	}
	for _, p := range poisons {
		j := slices.IndexFunc(letters, func(l ops.DeadLetter) bool { return l.MessageID == p.id })
		if j < 0 {
			return "misses " + p.id
		}
		l, k := letters[j], letterKey(queue, p.id)
		exchange, key := catalog.Exchange(p.key), p.key
		if dl.replayed[k] {
			// A replay goes through the default exchange straight to the queue that failed.
			exchange, key = "", queue
		}
		switch {
		case l.Reason == "":
			return fmt.Sprintf("%s has no %s header", p.id, broker.HeaderReason)
		case l.FailedOn != queue || l.Exchange != exchange || l.RoutingKey != key:
			return fmt.Sprintf("%s failed on %s (%q %s), want %s (%q %s)", p.id, l.FailedOn, l.Exchange, l.RoutingKey,
				queue, exchange, key)
		case p.unknown && !strings.Contains(l.Reason, unknownType):
			return fmt.Sprintf("%s: the reason does not name the unknown type: %s", p.id, l.Reason)
		case !p.unknown && l.Event != nil:
			return p.id + ": the garbage decodes"
		case slices.Contains(again, k) && l.FailedAt == dl.failedAt[k]:
			return p.id + " has not failed again since its replay"
		}
	}
	return ""
}

// letterKey names a dead letter: one poison message reaches every queue bound to its routing
// key, with the same message id.
func letterKey(queue, messageID string) string { return queue + " " + messageID }
