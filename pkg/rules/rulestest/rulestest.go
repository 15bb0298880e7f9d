// Package rulestest is what the store contracts of the services (services/*/internal/storetest)
// share: a unit of work under test, begun on the store as the rules see it and ended by the
// test, and the reads and writes the contracts make through one. Each contract checks its own
// store; the harness around the checks is the same for all, so it lives here once.
package rulestest

import (
	"context"
	"testing"

	"github.com/google/uuid"
)

// Begin starts a unit of work on a store under test: the store as the rules see it, and its end,
// which commits what was written through the store when commit is true and drops it otherwise.
// orderIDs are the orders the unit of work touches, for an implementation that reads them ahead
// as the runner's Prepare does; others ignore them. The end reports its own failures through t.
type Begin[S any] func(t *testing.T, orderIDs ...string) (store S, end func(commit bool))

// Unit is one unit of work under test: Store, as the rules see it, until Commit or Rollback
// ends it. One the test leaves open is rolled back when the test ends, so that a failed test
// leaves no lock behind for the next.
type Unit[S any] struct {
	Store S
	// T is the test the unit of work belongs to; helpers that read through the unit fail it.
	T     *testing.T
	end   func(commit bool)
	ended bool
}

// Start returns the unit of work a contract's Begin started for t: its store, and its end,
// which commits what was written through the store when commit is true and drops it otherwise.
func Start[S any](t *testing.T, store S, end func(commit bool)) *Unit[S] {
	t.Helper()
	u := &Unit[S]{Store: store, T: t, end: end}
	t.Cleanup(func() {
		if !u.ended {
			u.Rollback()
		}
	})
	return u
}

// Commit ends u, keeping what was written through its store.
func (u *Unit[S]) Commit() { u.ended = true; u.end(true) }

// Rollback ends u, dropping what was written through its store.
func (u *Unit[S]) Rollback() { u.ended = true; u.end(false) }

// Do runs f on u's store and commits u: what a test sets up, written by a unit of work of its
// own.
func (u *Unit[S]) Do(f func(store S)) {
	u.T.Helper()
	f(u.Store)
	u.Commit()
}

// Get returns what read, one of the store's reads as a method expression
// (eventhandler.Store.Payment), finds of key through u, failing the test on an error; name is
// the read's, for the message.
func Get[S, K, V any](u *Unit[S], name string, read func(S, context.Context, K) (V, error), key K) V {
	u.T.Helper()
	v, err := read(u.Store, context.Background(), key)
	if err != nil {
		u.T.Fatalf("%s(%v): %v", name, key, err)
	}
	return v
}

// Records is how a store contract reaches the one record of a kind an order has at most (its
// payment, its shipment, its reservation): the contracts of such stores begin units of work,
// read the record and add it alike. S is the store as the rules see it, R the record.
type Records[S any, R comparable] struct {
	// Begin starts a unit of work touching orderIDs: the contract's Begin.
	Begin Begin[S]
	// Name is the store's read, for the messages of a failed read.
	Name string
	// Get is the store's read of an order's record, as a method expression
	// (eventhandler.Store.Payment).
	Get func(S, context.Context, string) (R, error)
	// Add adds a new record through the store, as a method expression; Add and OrderID are
	// needed by Store alone.
	Add func(S, R)
	// OrderID is the order of a record.
	OrderID func(R) string
}

// Unit begins a unit of work touching orderIDs.
func (r Records[S, R]) Unit(t *testing.T, orderIDs ...string) *Unit[S] {
	t.Helper()
	s, end := r.Begin(t, orderIDs...)
	return Start(t, s, end)
}

// In returns the record of an order as u sees it, failing the test on an error.
func (r Records[S, R]) In(u *Unit[S], orderID string) R {
	u.T.Helper()
	return Get(u, r.Name, r.Get, orderID)
}

// Read returns the record of an order as a unit of work of its own sees it.
func (r Records[S, R]) Read(t *testing.T, orderID string) R {
	t.Helper()
	u := r.Unit(t, orderID)
	rec := r.In(u, orderID)
	u.Commit()
	return rec
}

// Store commits rec, added by a unit of work of its own.
func (r Records[S, R]) Store(t *testing.T, rec R) {
	t.Helper()
	r.Unit(t, r.OrderID(rec)).Do(func(s S) { r.Add(s, rec) })
}

// ReadsNone checks that an order without a record reads none, asked twice in one unit of work
// as a second event of the order would ask: every contract's first subtest.
func (r Records[S, R]) ReadsNone(t *testing.T) {
	orderID := uuid.NewString()
	u := r.Unit(t, orderID)
	var none R
	if got := r.In(u, orderID); got != none {
		t.Errorf("%s of an order without one = %+v, want none", r.Name, got)
	}
	if got := r.In(u, orderID); got != none {
		t.Errorf("%s asked again = %+v, want none", r.Name, got)
	}
	u.Commit()
}

// Check fails t unless got is a record (not the zero value: nil) that view shows as it shows
// want; view is what of a record the rules read, comparable so that a test sees all of it.
func Check[R, V comparable](t *testing.T, what string, view func(R) V, got, want R) {
	t.Helper()
	var none R
	if got == none {
		t.Fatalf("%s: none, want %+v", what, view(want))
	}
	if view(got) != view(want) {
		t.Errorf("%s: %+v, want %+v", what, view(got), view(want))
	}
}
