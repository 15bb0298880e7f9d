package postgres_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
)

func update(o *order.Order, version int, status order.Status) order.Update {
	return order.Update{OrderID: o.ID(), Version: version, Change: order.StatusChange{Status: status, Reason: "test", At: time.Now().UTC()}}
}

// A watch right after CreateOrder gets the order from the feed, as the changes seen since left
// it, and none once a change may have been missed.
func TestFeedKeepsCreatedOrdersUpToDate(t *testing.T) {
	t.Parallel()
	feed := postgres.NewStatusFeed(nil, testenv.Logger(t)) // not running: no NOTIFY is sent
	o := newOrder(t, uuid.NewString(), "")
	feed.Created(o)

	_, known, unsubscribe := feed.Subscribe(o.ID())
	unsubscribe()
	if known == nil || known.Version() != 1 || known.Status() != order.StatusPending {
		t.Fatalf("known right after Created: %+v", known)
	}
	feed.Announce([]order.Update{update(o, 2, order.StatusPaymentApproved)})
	_, known, unsubscribe = feed.Subscribe(o.ID())
	unsubscribe()
	if known == nil || known.Version() != 2 || known.Status() != order.StatusPaymentApproved || len(known.History()) != 2 {
		t.Fatalf("known after a change: %+v", known)
	}
	// The copy handed out is the watcher's own.
	known.Follow(update(o, 3, order.StatusInventoryReserved))
	_, again, unsubscribe := feed.Subscribe(o.ID())
	unsubscribe()
	if again.Version() != 2 {
		t.Fatalf("a watcher's copy changed the feed's: version %d", again.Version())
	}
	// Version 3 never arrived: after version 4 the copy cannot be trusted.
	feed.Announce([]order.Update{update(o, 4, order.StatusConfirmed)})
	if _, known, unsubscribe = feed.Subscribe(o.ID()); known != nil {
		t.Fatalf("known after a missed change: version %d", known.Version())
	}
	unsubscribe()
	if _, known, unsubscribe = feed.Subscribe(uuid.NewString()); known != nil {
		t.Fatal("an order created elsewhere is known")
	}
	unsubscribe()
}
