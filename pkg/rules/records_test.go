package rules_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/rules"
)

// record is a record of one order, as a payment or a shipment is.
type record struct{ order, what string }

func TestAddFirst(t *testing.T) {
	t.Parallel()
	tbl := rules.NewTable(func(r *record) *record { c := *r; return &c })
	orderID := func(r *record) string { return r.order }
	ctx := context.Background()

	s, end := rules.BeginRecords(tbl, orderID)
	r, added, err := rules.AddFirst(ctx, s, "o1", func() (*record, error) { return &record{"o1", "first"}, nil })
	if err != nil || !added || r.what != "first" {
		t.Fatalf("an order without a record: %+v, added %v, %v; want the first, added", r, added, err)
	}
	r, added, err = rules.AddFirst(ctx, s, "o1", func() (*record, error) {
		t.Error("decide called for an order that has a record")
		return &record{"o1", "second"}, nil
	})
	if err != nil || added || r.what != "first" {
		t.Fatalf("an order with a record: %+v, added %v, %v; want the first, not added", r, added, err)
	}
	end(true)
	if got, ok := tbl.Get("o1"); !ok || got.what != "first" {
		t.Fatalf("committed: %+v, %v; want the first", got, ok)
	}

	s, end = rules.BeginRecords(tbl, orderID)
	refused := errors.New("refused")
	_, added, err = rules.AddFirst(ctx, s, "o2", func() (*record, error) { return nil, refused })
	if !errors.Is(err, refused) || !failure.IsPermanent(err) || added {
		t.Fatalf("decide failed: added %v, %v; want the error, permanent", added, err)
	}
	end(true)
	if _, ok := tbl.Get("o2"); ok {
		t.Error("a record was stored for an order whose decision failed")
	}
}
