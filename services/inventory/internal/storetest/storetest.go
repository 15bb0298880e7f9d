// Package storetest is the contract of inventory-service's Store (eventhandler.Store): what the
// rules rely on from storage, checked against every implementation, the PostgreSQL store and
// the in-memory one, so that a saga test run in memory proves something about production.
package storetest

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

// Begin starts a unit of work on the store under test: the store as the rules see it, and its
// end, which commits what was written through the store when commit is true and drops it
// otherwise. orderIDs are the orders the unit of work touches and productIDs the products its
// payment.approved events name, for an implementation that reads them ahead as the runner's
// Prepare does; others ignore them. The end reports its own failures through t.
type Begin func(t *testing.T, orderIDs, productIDs []string) (store eventhandler.Store, end func(commit bool))

// SetStock creates a product with total units in stock, nothing reserved, as the admin API
// does; it is never called while a unit of work is under way.
type SetStock func(t *testing.T, productID string, total int64)

// Run checks the contract of inventory-service's Store against the implementation begin starts;
// setStock makes the products a subtest needs. Units of work run one after another, never two
// at once; each subtest uses orders and products of its own.
func Run(t *testing.T, begin Begin, setStock SetStock) {
	c := &contract{begin: begin, setStock: setStock}
	t.Run("an order without a reservation reads nil", c.orderWithoutReservation)
	t.Run("Products returns only the products that exist", c.productsThatExist)
	t.Run("Products returns the same product to every call of a unit of work", c.sameProduct)
	t.Run("a second reservation in a unit of work sees the stock the first took", c.secondReservationSeesFirst)
	t.Run("reserved stock is visible to the next unit of work once committed", c.stockCommitted)
	t.Run("a unit of work reads back the reservation it added", c.readsOwnAdd)
	t.Run("a held reservation's status and items round-trip", c.heldRoundTrip)
	t.Run("a reservation and its stock are as they were after a rollback", c.reserveRolledBack)
	t.Run("a release is visible to the next unit of work once committed, stock given back", c.releaseCommitted)
	t.Run("a release leaves reservation and stock as they were after a rollback", c.releaseRolledBack)
	t.Run("a reservation added then released in one unit of work is stored as it ended", c.addThenRelease)
	t.Run("a cancelled order's tombstone round-trips without items", c.tombstone)
}

type contract struct {
	begin    Begin
	setStock SetStock
}

// unit is one unit of work under test. One the subtest leaves open is rolled back at its end,
// so that a failed subtest leaves no lock behind for the next.
type unit struct {
	eventhandler.Store
	t     *testing.T
	end   func(bool)
	ended bool
}

func (c *contract) unit(t *testing.T, orderIDs, productIDs []string) *unit {
	t.Helper()
	s, end := c.begin(t, orderIDs, productIDs)
	u := &unit{Store: s, t: t, end: end}
	t.Cleanup(func() {
		if !u.ended {
			u.rollback()
		}
	})
	return u
}

func (u *unit) commit()   { u.ended = true; u.end(true) }
func (u *unit) rollback() { u.ended = true; u.end(false) }

// reservation returns the reservation of an order as u sees it, failing t on an error.
func (u *unit) reservation(orderID string) *inventory.Reservation {
	u.t.Helper()
	r, err := u.Reservation(context.Background(), orderID)
	if err != nil {
		u.t.Fatalf("Reservation(%s): %v", orderID, err)
	}
	return r
}

// products returns the products of ids that exist as u sees them, failing t on an error.
func (u *unit) products(ids ...string) map[string]*inventory.Product {
	u.t.Helper()
	ps, err := u.Products(context.Background(), ids)
	if err != nil {
		u.t.Fatalf("Products(%v): %v", ids, err)
	}
	return ps
}

// reserve reserves items for an order as the rules do: it fails t unless the order has no
// reservation yet, and returns the reservation, or the error of inventory.Reserve, in which
// case it writes nothing.
func (u *unit) reserve(orderID string, items ...inventory.Item) (*inventory.Reservation, error) {
	u.t.Helper()
	if r := u.reservation(orderID); r != nil {
		u.t.Fatalf("order %s has a reservation already: %+v", orderID, *r)
	}
	products := u.products(inventory.ProductIDs(items)...)
	if err := inventory.Reserve(products, items); err != nil {
		return nil, err
	}
	r := &inventory.Reservation{ID: uuid.NewString(), OrderID: orderID, Status: inventory.Held, Items: inventory.Merge(items)}
	u.AddReservation(r)
	u.SaveStock(products)
	return r, nil
}

// release gives back the held reservation of an order as the rules do, and returns it.
func (u *unit) release(orderID string) *inventory.Reservation {
	u.t.Helper()
	r := u.reservation(orderID)
	if r == nil || r.Status != inventory.Held {
		u.t.Fatalf("order %s: reservation %v, want one held", orderID, r)
	}
	products := u.products(inventory.ProductIDs(r.Items)...)
	if err := inventory.Release(products, r.Items); err != nil {
		u.t.Fatalf("Release: %v", err)
	}
	r.Status = inventory.Released
	u.SaveReservation(r)
	u.SaveStock(products)
	return r
}

// product creates a product with total units in stock and returns its id.
func (c *contract) product(t *testing.T, total int64) string {
	t.Helper()
	id := uuid.NewString()
	c.setStock(t, id, total)
	return id
}

// reserved commits a reservation of items for a new order and returns it.
func (c *contract) reserved(t *testing.T, items ...inventory.Item) *inventory.Reservation {
	t.Helper()
	orderID := uuid.NewString()
	u := c.unit(t, []string{orderID}, inventory.ProductIDs(items))
	r, err := u.reserve(orderID, items...)
	if err != nil {
		t.Fatalf("reserve %v: %v", items, err)
	}
	u.commit()
	return r
}

// stock returns the total and reserved units of a product as a unit of work of its own sees
// them.
func (c *contract) stock(t *testing.T, id string) (total, reserved int64) {
	t.Helper()
	u := c.unit(t, nil, nil)
	p := u.products(id)[id]
	u.commit()
	if p == nil {
		t.Fatalf("product %s does not exist", id)
	}
	return p.Total(), p.Reserved()
}

// checkStock fails t unless the product has total and reserved units, as the next unit of work
// sees it.
func (c *contract) checkStock(t *testing.T, what, id string, total, reserved int64) {
	t.Helper()
	if gotTotal, gotReserved := c.stock(t, id); gotTotal != total || gotReserved != reserved {
		t.Errorf("%s: product %s total %d, reserved %d; want %d, %d", what, id, gotTotal, gotReserved, total, reserved)
	}
}

// read returns the reservation of an order as a unit of work of its own sees it.
func (c *contract) read(t *testing.T, orderID string) *inventory.Reservation {
	t.Helper()
	u := c.unit(t, []string{orderID}, nil)
	r := u.reservation(orderID)
	u.commit()
	return r
}

// sorted returns a copy of r with its items in product id order: the order of the items is not
// part of the contract.
func sorted(r inventory.Reservation) inventory.Reservation {
	r.Items = slices.SortedFunc(slices.Values(r.Items), func(a, b inventory.Item) int { return cmp.Compare(a.ProductID, b.ProductID) })
	return r
}

// check fails t unless got is a reservation equal to want, items in any order.
func check(t *testing.T, what string, got, want *inventory.Reservation) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no reservation, want %+v", what, *want)
	}
	g, w := sorted(*got), sorted(*want)
	if g.ID != w.ID || g.OrderID != w.OrderID || g.Status != w.Status || !slices.Equal(g.Items, w.Items) {
		t.Errorf("%s: %+v, want %+v", what, g, w)
	}
}

func (c *contract) orderWithoutReservation(t *testing.T) {
	orderID := uuid.NewString()
	u := c.unit(t, []string{orderID}, nil)
	if r := u.reservation(orderID); r != nil {
		t.Errorf("Reservation of an order without one = %+v, want nil", *r)
	}
	if r := u.reservation(orderID); r != nil {
		t.Errorf("Reservation asked again = %+v, want nil", *r)
	}
	u.commit()
}

func (c *contract) productsThatExist(t *testing.T) {
	a, b, missing := c.product(t, 5), c.product(t, 7), uuid.NewString()
	u := c.unit(t, []string{uuid.NewString()}, []string{a, missing, b})
	got := u.products(b, missing, a)
	if len(got) != 2 || got[a] == nil || got[b] == nil {
		t.Fatalf("Products(b, missing, a) = %v, want a and b only", got)
	}
	for id, total := range map[string]int64{a: 5, b: 7} {
		if p := got[id]; p.ID() != id || p.Total() != total || p.Reserved() != 0 {
			t.Errorf("product %s: id %s, total %d, reserved %d; want total %d, none reserved", id, p.ID(), p.Total(), p.Reserved(), total)
		}
	}
	if _, ok := got[missing]; ok {
		t.Errorf("a product that does not exist is in Products")
	}
	// Asked again, alone, it still does not exist.
	if got := u.products(missing); len(got) != 0 {
		t.Errorf("Products(missing) = %v, want none", got)
	}
	u.commit()
}

func (c *contract) sameProduct(t *testing.T) {
	a, b := c.product(t, 5), c.product(t, 5)
	u := c.unit(t, []string{uuid.NewString()}, []string{a})
	first := u.products(a)
	if err := inventory.Reserve(first, []inventory.Item{{ProductID: a, Quantity: 2}}); err != nil {
		t.Fatal(err)
	}
	second := u.products(b, a)
	if second[a] != first[a] {
		t.Errorf("Products returned another *Product for %s the second time", a)
	}
	if second[a].Reserved() != 2 {
		t.Errorf("product %s reserved %d the second time, want the 2 reserved since", a, second[a].Reserved())
	}
	if second[b] == nil || second[b].Reserved() != 0 {
		t.Errorf("product %s: %v", b, second[b])
	}
	u.rollback()
}

func (c *contract) secondReservationSeesFirst(t *testing.T) {
	a, b := c.product(t, 5), c.product(t, 10)
	first, second := uuid.NewString(), uuid.NewString()
	u := c.unit(t, []string{first, second}, []string{a, b})
	if _, err := u.reserve(first, inventory.Item{ProductID: a, Quantity: 3}, inventory.Item{ProductID: b, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	// 2 of a are left: 3 more are refused, all or nothing, b included.
	if _, err := u.reserve(second, inventory.Item{ProductID: b, Quantity: 1}, inventory.Item{ProductID: a, Quantity: 3}); !errors.Is(err, inventory.ErrInsufficientStock) {
		t.Fatalf("the second reservation of 3 of a: %v, want ErrInsufficientStock", err)
	}
	if _, err := u.reserve(second, inventory.Item{ProductID: a, Quantity: 2}, inventory.Item{ProductID: b, Quantity: 4}); err != nil {
		t.Fatalf("the second reservation of the 2 left of a: %v", err)
	}
	u.commit()
	c.checkStock(t, "product a", a, 5, 5)
	c.checkStock(t, "product b", b, 10, 5)
}

func (c *contract) stockCommitted(t *testing.T) {
	a := c.product(t, 4)
	c.reserved(t, inventory.Item{ProductID: a, Quantity: 3})
	c.checkStock(t, "after one reservation", a, 4, 3)
	c.reserved(t, inventory.Item{ProductID: a, Quantity: 1})
	c.checkStock(t, "after a second one", a, 4, 4)
}

func (c *contract) readsOwnAdd(t *testing.T) {
	a := c.product(t, 4)
	orderID := uuid.NewString()
	u := c.unit(t, []string{orderID}, []string{a})
	r, err := u.reserve(orderID, inventory.Item{ProductID: a, Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	check(t, "read after AddReservation", u.reservation(orderID), r)
	u.commit()
}

func (c *contract) heldRoundTrip(t *testing.T) {
	a, b := c.product(t, 10), c.product(t, 10)
	// Lines of one product are merged; the items come back in any order.
	r := c.reserved(t, inventory.Item{ProductID: b, Quantity: 2}, inventory.Item{ProductID: a, Quantity: 1}, inventory.Item{ProductID: b, Quantity: 3})
	if len(r.Items) != 2 {
		t.Fatalf("items not merged: %+v", r.Items)
	}
	check(t, "next unit of work", c.read(t, r.OrderID), r)
	c.checkStock(t, "product a", a, 10, 1)
	c.checkStock(t, "product b", b, 10, 5)
}

func (c *contract) reserveRolledBack(t *testing.T) {
	a := c.product(t, 3)
	orderID := uuid.NewString()
	u := c.unit(t, []string{orderID}, []string{a})
	if _, err := u.reserve(orderID, inventory.Item{ProductID: a, Quantity: 3}); err != nil {
		t.Fatal(err)
	}
	u.rollback()
	if r := c.read(t, orderID); r != nil {
		t.Errorf("after a rollback: %+v, want no reservation", *r)
	}
	c.checkStock(t, "after a rollback", a, 3, 0)
	// The stock is free for the reservation a redelivery makes.
	u = c.unit(t, []string{orderID}, []string{a})
	r, err := u.reserve(orderID, inventory.Item{ProductID: a, Quantity: 3})
	if err != nil {
		t.Fatal(err)
	}
	u.commit()
	check(t, "the reservation made after the rollback", c.read(t, orderID), r)
}

func (c *contract) releaseCommitted(t *testing.T) {
	a, b := c.product(t, 6), c.product(t, 6)
	r := c.reserved(t, inventory.Item{ProductID: a, Quantity: 2}, inventory.Item{ProductID: b, Quantity: 3})
	other := c.reserved(t, inventory.Item{ProductID: a, Quantity: 1})
	u := c.unit(t, []string{r.OrderID}, nil)
	u.release(r.OrderID)
	want := *r
	want.Status = inventory.Released
	check(t, "read after SaveReservation", u.reservation(r.OrderID), &want)
	u.commit()
	check(t, "next unit of work", c.read(t, r.OrderID), &want)
	check(t, "another order's reservation", c.read(t, other.OrderID), other)
	c.checkStock(t, "product a", a, 6, 1)
	c.checkStock(t, "product b", b, 6, 0)
}

func (c *contract) releaseRolledBack(t *testing.T) {
	a := c.product(t, 6)
	r := c.reserved(t, inventory.Item{ProductID: a, Quantity: 2})
	u := c.unit(t, []string{r.OrderID}, nil)
	u.release(r.OrderID)
	u.rollback()
	check(t, "after a rollback", c.read(t, r.OrderID), r)
	c.checkStock(t, "after a rollback", a, 6, 2)
}

func (c *contract) addThenRelease(t *testing.T) {
	a := c.product(t, 6)
	orderID := uuid.NewString()
	u := c.unit(t, []string{orderID}, []string{a})
	r, err := u.reserve(orderID, inventory.Item{ProductID: a, Quantity: 4})
	if err != nil {
		t.Fatal(err)
	}
	// A second event of the order in the same unit of work (order.cancelled after
	// payment.approved): it reads the reservation the first added and releases it.
	u.release(orderID)
	u.commit()
	want := *r
	want.Status = inventory.Released
	check(t, "next unit of work", c.read(t, orderID), &want)
	c.checkStock(t, "product a", a, 6, 0)
}

func (c *contract) tombstone(t *testing.T) {
	r := &inventory.Reservation{ID: uuid.NewString(), OrderID: uuid.NewString(), Status: inventory.Cancelled}
	u := c.unit(t, []string{r.OrderID}, nil)
	if got := u.reservation(r.OrderID); got != nil {
		t.Fatalf("before AddReservation: %+v", *got)
	}
	u.AddReservation(r)
	check(t, "read after AddReservation", u.reservation(r.OrderID), r)
	u.commit()
	got := c.read(t, r.OrderID)
	check(t, "next unit of work", got, r)
	if got != nil && len(got.Items) != 0 {
		t.Errorf("the tombstone holds items: %+v", got.Items)
	}
}
