package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

func newReq(t *testing.T, ctx context.Context) *createReq {
	t.Helper()
	o, err := order.New(order.Params{
		CustomerID:    uuid.NewString(),
		PaymentMethod: "credit_card",
		Items:         []order.Item{{ProductID: uuid.NewString(), Quantity: 1, UnitPrice: 100}},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req := &createReq{o: o, done: make(chan struct{})}
	req.deadline, _ = ctx.Deadline()
	return req
}

// A caller waits for its batch only as long as its context allows, whether its order is in the
// batch under way or still queued behind it; a queued order whose caller gave up is never
// stored; the batch's own round trips end once nobody waits for them any more.
func TestCreatesWaitOnlyAsLongAsTheirCallers(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		inserted []*createReq
		ended    = make(chan time.Duration, 10)
	)
	c := &creates{insert: func(ctx context.Context, batch []*createReq) error {
		start := time.Now()
		<-ctx.Done() // a database that does not answer
		ended <- time.Since(start)
		mu.Lock()
		inserted = append(inserted, batch...)
		mu.Unlock()
		return ctx.Err()
	}}
	type result struct {
		err     error
		elapsed time.Duration
	}
	call := func(d time.Duration) (*createReq, chan result) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		req := newReq(t, ctx)
		out := make(chan result, 1)
		go func() {
			defer cancel()
			start := time.Now()
			err := c.store(ctx, req)
			if err == nil {
				err = req.err // its batch ended as its deadline did
			}
			out <- result{err, time.Since(start)}
		}()
		return req, out
	}
	_, first := call(300 * time.Millisecond) // leads the batch that hangs
	time.Sleep(50 * time.Millisecond)
	queued, second := call(100 * time.Millisecond) // queued behind it
	for name, ch := range map[string]chan result{"in the batch": first, "queued": second} {
		r := <-ch
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("%s: err %v, want its deadline", name, r.err)
		}
		if r.elapsed > 2*time.Second {
			t.Errorf("%s: answered after %s", name, r.elapsed)
		}
	}
	select {
	case d := <-ended:
		if d > 2*time.Second {
			t.Errorf("the batch's round trip lasted %s, past its callers' deadlines", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the batch's round trip never ended")
	}
	time.Sleep(100 * time.Millisecond) // would the queued order be stored after its caller left?
	mu.Lock()
	defer mu.Unlock()
	for _, req := range inserted {
		if req == queued {
			t.Error("the order whose caller gave up while queued was stored")
		}
	}
}
