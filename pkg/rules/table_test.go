package rules_test

import (
	"testing"

	"github.com/ordersaga/ordersaga/pkg/rules"
)

type row struct{ n int }

func TestTableKeepsWritesApartUntilCommit(t *testing.T) {
	t.Parallel()
	tbl := rules.NewTable(func(r *row) *row { c := *r; return &c })
	tx := tbl.Begin()
	r := &row{n: 1}
	tx.Put("a", r)
	r.n = 2 // a change after Put is not the table's
	if got, ok := tx.Get("a"); !ok || got.n != 1 {
		t.Fatalf("the unit of work reads %v, %v; want its own write, 1", got, ok)
	}
	if _, ok := tbl.Get("a"); ok {
		t.Fatal("a write is visible before its commit")
	}
	tx.Commit()
	got, ok := tbl.Get("a")
	if !ok || got.n != 1 {
		t.Fatalf("after commit: %v, %v; want 1", got, ok)
	}
	got.n = 3 // a change to what Get returned is not the table's
	if again, _ := tbl.Get("a"); again.n != 1 {
		t.Errorf("Get handed out the stored row: %d", again.n)
	}
	dropped := tbl.Begin()
	dropped.Put("b", &row{n: 9})
	if _, ok := tbl.Get("b"); ok {
		t.Error("an uncommitted unit of work's write is visible")
	}
}
