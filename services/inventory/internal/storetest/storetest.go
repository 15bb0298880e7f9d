// Package storetest is the contract of inventory-service's Store (eventhandler.Store): what the
// rules rely on from storage, checked against every implementation, the PostgreSQL store and
// the in-memory one, so that a saga test run in memory proves something about production.
package storetest

import (
	"cmp"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/pkg/rules/rulestest"

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
	c.Records = rulestest.Records[eventhandler.Store, *inventory.Reservation]{
		Begin: func(t *testing.T, orderIDs ...string) (eventhandler.Store, func(bool)) {
			return begin(t, orderIDs, nil)
		},
		Name: "Reservation", Get: eventhandler.Store.Reservation,
	}
	t.Run("an order without a reservation reads nil", c.ReadsNone)
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

// contract reaches the store under test through units of work and Reservation reads, as the
// other services' contracts reach theirs, and makes products with setStock.
type contract struct {
	rulestest.Records[eventhandler.Store, *inventory.Reservation]
	begin    Begin
	setStock SetStock
}

// unit is one unit of work under test.
type unit = rulestest.Unit[eventhandler.Store]

// unit begins a unit of work on orderIDs whose payment.approved names productIDs.
func (c *contract) unit(t *testing.T, orderIDs, productIDs []string) *unit {
	t.Helper()
	s, end := c.begin(t, orderIDs, productIDs)
	return rulestest.Start(t, s, end)
}

// products returns the products of ids that exist as u sees them, failing t on an error.
func products(u *unit, ids ...string) map[string]*inventory.Product {
	u.T.Helper()
	return rulestest.Get(u, "Products", eventhandler.Store.Products, ids)
}

// reserve reserves items for an order as the rules do: it fails t unless the order has no
// reservation yet, and returns the reservation, or the error of inventory.Reserve, in which
// case it writes nothing.
func (c *contract) reserve(u *unit, orderID string, items ...inventory.Item) (*inventory.Reservation, error) {
	u.T.Helper()
	if r := c.In(u, orderID); r != nil {
		u.T.Fatalf("order %s has a reservation already: %+v", orderID, *r)
	}
	products := products(u, inventory.ProductIDs(items)...)
	if err := inventory.Reserve(products, items); err != nil {
		return nil, err
	}
	r := &inventory.Reservation{ID: uuid.NewString(), OrderID: orderID, Status: inventory.Held, Items: inventory.Merge(items)}
	u.Store.AddReservation(r)
	u.Store.SaveStock(products)
	return r, nil
}

// release gives back the held reservation of an order as the rules do, and returns it.
func (c *contract) release(u *unit, orderID string) *inventory.Reservation {
	u.T.Helper()
	r := c.In(u, orderID)
	if r == nil || r.Status != inventory.Held {
		u.T.Fatalf("order %s: reservation %v, want one held", orderID, r)
	}
	products := products(u, inventory.ProductIDs(r.Items)...)
	if err := inventory.Release(products, r.Items); err != nil {
		u.T.Fatalf("Release: %v", err)
	}
	r.Status = inventory.Released
	u.Store.SaveReservation(r)
	u.Store.SaveStock(products)
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
	r := c.mustReserve(u, orderID, items...)
	u.Commit()
	return r
}

// reserveOpen makes a product with total units in stock and reserves quantity of it for a new
// order in a unit of work it leaves open; it returns the product, the reservation and the unit.
func (c *contract) reserveOpen(t *testing.T, total, quantity int64) (string, *inventory.Reservation, *unit) {
	t.Helper()
	a, orderID := c.product(t, total), uuid.NewString()
	u := c.unit(t, []string{orderID}, []string{a})
	return a, c.mustReserve(u, orderID, inventory.Item{ProductID: a, Quantity: quantity}), u
}

// mustReserve reserves items for an order through u as reserve does, failing the test on an
// error.
func (c *contract) mustReserve(u *unit, orderID string, items ...inventory.Item) *inventory.Reservation {
	u.T.Helper()
	r, err := c.reserve(u, orderID, items...)
	if err != nil {
		u.T.Fatalf("reserve %v: %v", items, err)
	}
	return r
}

// stock returns the total and reserved units of a product as a unit of work of its own sees
// them.
func (c *contract) stock(t *testing.T, id string) (total, reserved int64) {
	t.Helper()
	u := c.unit(t, nil, nil)
	p := products(u, id)[id]
	u.Commit()
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

func (c *contract) productsThatExist(t *testing.T) {
	a, b, missing := c.product(t, 5), c.product(t, 7), uuid.NewString()
	u := c.unit(t, []string{uuid.NewString()}, []string{a, missing, b})
	got := products(u, b, missing, a)
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
	if got := products(u, missing); len(got) != 0 {
		t.Errorf("Products(missing) = %v, want none", got)
	}
	u.Commit()
}

func (c *contract) sameProduct(t *testing.T) {
	a, b := c.product(t, 5), c.product(t, 5)
	u := c.unit(t, []string{uuid.NewString()}, []string{a})
	first := products(u, a)
	if err := inventory.Reserve(first, []inventory.Item{{ProductID: a, Quantity: 2}}); err != nil {
		t.Fatal(err)
	}
	second := products(u, b, a)
	if second[a] != first[a] {
		t.Errorf("Products returned another *Product for %s the second time", a)
	}
	if second[a].Reserved() != 2 {
		t.Errorf("product %s reserved %d the second time, want the 2 reserved since", a, second[a].Reserved())
	}
	if second[b] == nil || second[b].Reserved() != 0 {
		t.Errorf("product %s: %v", b, second[b])
	}
	u.Rollback()
}

func (c *contract) secondReservationSeesFirst(t *testing.T) {
	a, b := c.product(t, 5), c.product(t, 10)
	first, second := uuid.NewString(), uuid.NewString()
	u := c.unit(t, []string{first, second}, []string{a, b})
	if _, err := c.reserve(u, first, inventory.Item{ProductID: a, Quantity: 3}, inventory.Item{ProductID: b, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	// 2 of a are left: 3 more are refused, all or nothing, b included.
	if _, err := c.reserve(u, second, inventory.Item{ProductID: b, Quantity: 1}, inventory.Item{ProductID: a, Quantity: 3}); !errors.Is(err, inventory.ErrInsufficientStock) {
		t.Fatalf("the second reservation of 3 of a: %v, want ErrInsufficientStock", err)
	}
	if _, err := c.reserve(u, second, inventory.Item{ProductID: a, Quantity: 2}, inventory.Item{ProductID: b, Quantity: 4}); err != nil {
		t.Fatalf("the second reservation of the 2 left of a: %v", err)
	}
	u.Commit()
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
	_, r, u := c.reserveOpen(t, 4, 1)
	check(t, "read after AddReservation", c.In(u, r.OrderID), r)
	u.Commit()
}

func (c *contract) heldRoundTrip(t *testing.T) {
	a, b := c.product(t, 10), c.product(t, 10)
	// Lines of one product are merged; the items come back in any order.
	r := c.reserved(t, inventory.Item{ProductID: b, Quantity: 2}, inventory.Item{ProductID: a, Quantity: 1}, inventory.Item{ProductID: b, Quantity: 3})
	if len(r.Items) != 2 {
		t.Fatalf("items not merged: %+v", r.Items)
	}
	check(t, "next unit of work", c.Read(t, r.OrderID), r)
	c.checkStock(t, "product a", a, 10, 1)
	c.checkStock(t, "product b", b, 10, 5)
}

func (c *contract) reserveRolledBack(t *testing.T) {
	a, r, u := c.reserveOpen(t, 3, 3)
	orderID := r.OrderID
	u.Rollback()
	if r := c.Read(t, orderID); r != nil {
		t.Errorf("after a rollback: %+v, want no reservation", *r)
	}
	c.checkStock(t, "after a rollback", a, 3, 0)
	// The stock is free for the reservation a redelivery makes.
	u = c.unit(t, []string{orderID}, []string{a})
	r = c.mustReserve(u, orderID, inventory.Item{ProductID: a, Quantity: 3})
	u.Commit()
	check(t, "the reservation made after the rollback", c.Read(t, orderID), r)
}

func (c *contract) releaseCommitted(t *testing.T) {
	a, b := c.product(t, 6), c.product(t, 6)
	r := c.reserved(t, inventory.Item{ProductID: a, Quantity: 2}, inventory.Item{ProductID: b, Quantity: 3})
	other := c.reserved(t, inventory.Item{ProductID: a, Quantity: 1})
	u := c.unit(t, []string{r.OrderID}, nil)
	c.release(u, r.OrderID)
	want := *r
	want.Status = inventory.Released
	check(t, "read after SaveReservation", c.In(u, r.OrderID), &want)
	u.Commit()
	check(t, "next unit of work", c.Read(t, r.OrderID), &want)
	check(t, "another order's reservation", c.Read(t, other.OrderID), other)
	c.checkStock(t, "product a", a, 6, 1)
	c.checkStock(t, "product b", b, 6, 0)
}

func (c *contract) releaseRolledBack(t *testing.T) {
	a := c.product(t, 6)
	r := c.reserved(t, inventory.Item{ProductID: a, Quantity: 2})
	u := c.unit(t, []string{r.OrderID}, nil)
	c.release(u, r.OrderID)
	u.Rollback()
	check(t, "after a rollback", c.Read(t, r.OrderID), r)
	c.checkStock(t, "after a rollback", a, 6, 2)
}

func (c *contract) addThenRelease(t *testing.T) {
	a, r, u := c.reserveOpen(t, 6, 4)
	orderID := r.OrderID
	// A second event of the order in the same unit of work (order.cancelled after
	// payment.approved): it reads the reservation the first added and releases it.
	c.release(u, orderID)
	u.Commit()
	want := *r
	want.Status = inventory.Released
	check(t, "next unit of work", c.Read(t, orderID), &want)
	c.checkStock(t, "product a", a, 6, 0)
}

func (c *contract) tombstone(t *testing.T) {
	r := &inventory.Reservation{ID: uuid.NewString(), OrderID: uuid.NewString(), Status: inventory.Cancelled}
	u := c.unit(t, []string{r.OrderID}, nil)
	if got := c.In(u, r.OrderID); got != nil {
		t.Fatalf("before AddReservation: %+v", *got)
	}
	u.Store.AddReservation(r)
	check(t, "read after AddReservation", c.In(u, r.OrderID), r)
	u.Commit()
	got := c.Read(t, r.OrderID)
	check(t, "next unit of work", got, r)
	if got != nil && len(got.Items) != 0 {
		t.Errorf("the tombstone holds items: %+v", got.Items)
	}
}
