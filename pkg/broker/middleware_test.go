package broker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestChainWrapsTheFirstOutermost(t *testing.T) {
	t.Parallel()
	var calls []string
	mark := func(name string) Middleware {
		return func(h Handler) Handler {
			return func(ctx context.Context, batch []amqp.Delivery) error {
				calls = append(calls, name+" in")
				err := h(ctx, batch)
				calls = append(calls, name+" out")
				return err
			}
		}
	}
	h := Chain(func(context.Context, []amqp.Delivery) error { calls = append(calls, "handler"); return nil }, mark("a"), mark("b"))
	if err := h(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a in", "b in", "handler", "b out", "a out"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
}

func TestRecovererTurnsAPanicIntoAnError(t *testing.T) {
	t.Parallel()
	h := Recoverer(slog.New(slog.DiscardHandler))(func(context.Context, []amqp.Delivery) error { panic("poison") })
	err := h(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "poison") {
		t.Fatalf("err = %v, want the panic as an error", err)
	}
	// Neither permanent nor transient: decide retries it in process, then counts a failure.
	if v := decide(err, 1, 1, 0, ConsumerOptions{UnknownErrorTries: 3, FailureLimit: 5}); v != retry {
		t.Errorf("a panic is decided %v, want retry", v)
	}
}

func TestTimeoutBoundsTheCall(t *testing.T) {
	t.Parallel()
	h := Timeout(50 * time.Millisecond)(func(ctx context.Context, _ []amqp.Delivery) error {
		<-ctx.Done()
		return ctx.Err()
	})
	start := time.Now()
	if err := h(context.Background(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the call took %v", d)
	}
}
