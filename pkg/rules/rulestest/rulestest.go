// Package rulestest is what the store contracts of the services (services/*/internal/storetest)
// share: a unit of work under test, begun on the store as the rules see it and ended by the
// test, and the reads and writes the contracts make through one. Each contract checks its own
// store; the harness around the checks is the same for all, so it lives here once.
package rulestest

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/pkg/rules"
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

// RecordsOf returns the Records of a store of one record per order (rules.Records), whose read
// is Get; name is the record's kind, for the messages.
func RecordsOf[R comparable](begin Begin[rules.Records[R]], name string, orderID func(R) string) Records[rules.Records[R], R] {
	return Records[rules.Records[R], R]{Begin: begin, Name: name, Get: rules.Records[R].Get, Add: rules.Records[R].Add, OrderID: orderID}
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

// Lifecycle is the contract every store of one record per order (rules.Records) keeps, whatever
// the record: a unit of work reads back what it added and saved, the next one reads it once
// committed and not after a rollback, and orders are kept apart. A service's contract runs it
// and checks its own records beside it. V is what of a record the rules read (Check).
type Lifecycle[R, V comparable] struct {
	Records[rules.Records[R], R]
	// Noun names a record in the subtests ("payment").
	Noun string
	// New returns a new record of an order, as a rule adds it.
	New func(t *testing.T, orderID string) R
	// Change changes a record as the rule of a later event of its order does before it saves
	// it (a reversal, a cancellation), failing t when the record does not change.
	Change func(t *testing.T, r R)
	// Changed returns r as Change leaves it.
	Changed func(r R) R
	// View is what of a record the rules read.
	View func(R) V
}

// Run runs the subtests of the lifecycle.
func (l Lifecycle[R, V]) Run(t *testing.T) {
	t.Run(fmt.Sprintf("an order without a %s reads nil", l.Noun), l.ReadsNone)
	t.Run(fmt.Sprintf("a unit of work reads back the %s it added", l.Noun), l.readsOwnAdd)
	t.Run(fmt.Sprintf("an added %s is visible to the next unit of work once committed", l.Noun), l.addCommitted)
	t.Run(fmt.Sprintf("an added %s is gone after a rollback", l.Noun), l.addRolledBack)
	t.Run(fmt.Sprintf("a unit of work reads back the %s it saved", l.Noun), l.readsOwnSave)
	t.Run(fmt.Sprintf("a saved %s is visible to the next unit of work once committed", l.Noun), l.saveEnded(true))
	t.Run(fmt.Sprintf("a saved %s is as it was after a rollback", l.Noun), l.saveEnded(false))
	t.Run(fmt.Sprintf("a %s added then saved in one unit of work is stored as it ended", l.Noun), l.addThenSave)
	t.Run(fmt.Sprintf("the %ss of several orders in one unit of work are kept apart", l.Noun), l.severalOrders)
}

// Check fails t unless got is a record that reads as want.
func (l Lifecycle[R, V]) Check(t *testing.T, what string, got, want R) {
	t.Helper()
	Check(t, what, l.View, got, want)
}

// RoundTrip commits r, added by a unit of work of its own, and checks that the next unit of
// work reads it as it was.
func (l Lifecycle[R, V]) RoundTrip(t *testing.T, r R) {
	t.Helper()
	l.Store(t, r)
	l.Check(t, "next unit of work", l.Read(t, l.OrderID(r)), r)
}

// change reads the record of an order as u sees it, changes it and saves it, as a rule does.
func (l Lifecycle[R, V]) change(u *Unit[rules.Records[R]], orderID string) {
	u.T.Helper()
	r := l.In(u, orderID)
	l.Change(u.T, r)
	u.Store.Save(r)
}

// none fails t unless got is no record.
func (l Lifecycle[R, V]) none(t *testing.T, what string, got R) {
	t.Helper()
	var none R
	if got != none {
		t.Fatalf("%s: %+v, want no %s", what, l.View(got), l.Noun)
	}
}

func (l Lifecycle[R, V]) readsOwnAdd(t *testing.T) {
	r := l.New(t, uuid.NewString())
	u := l.Unit(t, l.OrderID(r))
	l.none(t, "before Add", l.In(u, l.OrderID(r)))
	u.Store.Add(r)
	l.Check(t, "read after Add", l.In(u, l.OrderID(r)), r)
	u.Commit()
}

func (l Lifecycle[R, V]) addCommitted(t *testing.T) {
	l.RoundTrip(t, l.New(t, uuid.NewString()))
}

func (l Lifecycle[R, V]) addRolledBack(t *testing.T) {
	r := l.New(t, uuid.NewString())
	u := l.Unit(t, l.OrderID(r))
	u.Store.Add(r)
	u.Rollback()
	l.none(t, "after a rollback", l.Read(t, l.OrderID(r)))
	// The order is free for the record a redelivery makes.
	again := l.New(t, l.OrderID(r))
	l.Store(t, again)
	l.Check(t, "the record added after the rollback", l.Read(t, l.OrderID(r)), again)
}

func (l Lifecycle[R, V]) readsOwnSave(t *testing.T) {
	r := l.New(t, uuid.NewString())
	l.Store(t, r)
	u := l.Unit(t, l.OrderID(r))
	l.Check(t, "before the change", l.In(u, l.OrderID(r)), r)
	l.change(u, l.OrderID(r))
	l.Check(t, "read after Save", l.In(u, l.OrderID(r)), l.Changed(r))
	u.Commit()
}

// saveEnded checks a saved record as the next unit of work sees it once the unit of work that
// changed it ends: changed when it committed, as it was when it rolled back.
func (l Lifecycle[R, V]) saveEnded(commit bool) func(t *testing.T) {
	return func(t *testing.T) {
		r := l.New(t, uuid.NewString())
		l.Store(t, r)
		u := l.Unit(t, l.OrderID(r))
		l.change(u, l.OrderID(r))
		if commit {
			u.Commit()
			l.Check(t, "next unit of work", l.Read(t, l.OrderID(r)), l.Changed(r))
			return
		}
		u.Rollback()
		l.Check(t, "after a rollback", l.Read(t, l.OrderID(r)), r)
	}
}

func (l Lifecycle[R, V]) addThenSave(t *testing.T) {
	r := l.New(t, uuid.NewString())
	u := l.Unit(t, l.OrderID(r))
	u.Store.Add(r)
	// A second event of the order in the same unit of work: it reads the record the first
	// added, changes it and saves it.
	l.change(u, l.OrderID(r))
	u.Commit()
	l.Check(t, "next unit of work", l.Read(t, l.OrderID(r)), l.Changed(r))
}

func (l Lifecycle[R, V]) severalOrders(t *testing.T) {
	a, b := l.New(t, uuid.NewString()), l.New(t, uuid.NewString())
	none := uuid.NewString()
	u := l.Unit(t, l.OrderID(a), l.OrderID(b), none)
	u.Store.Add(a)
	u.Store.Add(b)
	l.none(t, "an order without one", l.In(u, none))
	u.Commit()
	l.Check(t, "order a", l.Read(t, l.OrderID(a)), a)
	l.Check(t, "order b", l.Read(t, l.OrderID(b)), b)
	l.none(t, "an order without one, next unit of work", l.Read(t, none))
}
