package rules

import (
	"maps"
	"sync"
)

// Table is one table of an in-memory store, for a service's rules run by Memory: rows by key,
// and each unit of work's writes kept apart until it commits, as a transaction keeps them.
type Table[V any] struct {
	clone func(V) V // a copy that shares nothing with v, so that a row changes only when put

	mu   sync.Mutex
	rows map[string]V
}

// NewTable returns an empty table whose rows are copied with clone.
func NewTable[V any](clone func(V) V) *Table[V] {
	return &Table[V]{clone: clone, rows: map[string]V{}}
}

// Get returns a copy of the committed row of key.
func (t *Table[V]) Get(key string) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.rows[key]
	if ok {
		v = t.clone(v)
	}
	return v, ok
}

// Put writes the row of key at once, as a write outside the units of work (an API's) does.
func (t *Table[V]) Put(key string, v V) {
	v = t.clone(v)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows[key] = v
}

// Begin starts a unit of work's view of the table. Memory runs one unit of work at a time.
func (t *Table[V]) Begin() *TableTx[V] { return &TableTx[V]{t: t, written: map[string]V{}} }

// TableTx is a unit of work's view of a Table: what it reads includes what it wrote.
type TableTx[V any] struct {
	t       *Table[V]
	written map[string]V
}

// Get returns a copy of the row of key as this unit of work sees it.
func (tx *TableTx[V]) Get(key string) (V, bool) {
	if v, ok := tx.written[key]; ok {
		return tx.t.clone(v), true
	}
	return tx.t.Get(key)
}

// Put writes the row of key, taking effect at Commit.
func (tx *TableTx[V]) Put(key string, v V) { tx.written[key] = tx.t.clone(v) }

// Commit makes what was put take effect.
func (tx *TableTx[V]) Commit() {
	tx.t.mu.Lock()
	defer tx.t.mu.Unlock()
	maps.Copy(tx.t.rows, tx.written)
}

// End ends the unit of work: what was put takes effect when commit is true and is dropped
// otherwise. It is the end a Memory's begin returns.
func (tx *TableTx[V]) End(commit bool) {
	if commit {
		tx.Commit()
	}
}
