package inventory_test

import (
	"errors"
	"maps"
	"testing"

	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

const (
	keyboard = "00000000-0000-0000-0000-000000000001"
	mouse    = "00000000-0000-0000-0000-000000000002"
	unknown  = "00000000-0000-0000-0000-0000000000ff"
)

type stock struct{ total, reserved int64 }

func products(s map[string]stock) map[string]*inventory.Product {
	m := make(map[string]*inventory.Product, len(s))
	for id, st := range s {
		m[id] = inventory.Load(id, "", st.total, st.reserved)
	}
	return m
}

func snapshot(m map[string]*inventory.Product) map[string]stock {
	s := make(map[string]stock, len(m))
	for id, p := range m {
		s[id] = stock{p.Total(), p.Reserved()}
	}
	return s
}

func TestReserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		stock   map[string]stock
		items   []inventory.Item
		want    map[string]stock
		wantErr error
		wantMsg string
	}{
		{
			name:  "reserves every item",
			stock: map[string]stock{keyboard: {10, 2}, mouse: {5, 0}},
			items: []inventory.Item{{keyboard, 3}, {mouse, 5}},
			want:  map[string]stock{keyboard: {10, 5}, mouse: {5, 5}},
		},
		{
			name:  "merges repeated products",
			stock: map[string]stock{keyboard: {4, 0}},
			items: []inventory.Item{{keyboard, 2}, {keyboard, 2}},
			want:  map[string]stock{keyboard: {4, 4}},
		},
		{
			name:    "repeated products over stock together",
			stock:   map[string]stock{keyboard: {3, 0}},
			items:   []inventory.Item{{keyboard, 2}, {keyboard, 2}},
			want:    map[string]stock{keyboard: {3, 0}},
			wantErr: inventory.ErrInsufficientStock,
			wantMsg: "insufficient stock for product " + keyboard + ": requested 4, available 3",
		},
		{
			name:    "insufficient counts what is reserved",
			stock:   map[string]stock{keyboard: {10, 9}},
			items:   []inventory.Item{{keyboard, 3}},
			want:    map[string]stock{keyboard: {10, 9}},
			wantErr: inventory.ErrInsufficientStock,
			wantMsg: "insufficient stock for product " + keyboard + ": requested 3, available 1",
		},
		{
			name:    "one short item holds nothing",
			stock:   map[string]stock{keyboard: {10, 0}, mouse: {1, 0}},
			items:   []inventory.Item{{keyboard, 3}, {mouse, 2}},
			want:    map[string]stock{keyboard: {10, 0}, mouse: {1, 0}},
			wantErr: inventory.ErrInsufficientStock,
		},
		{
			name:    "unknown product holds nothing",
			stock:   map[string]stock{keyboard: {10, 0}},
			items:   []inventory.Item{{keyboard, 1}, {unknown, 1}},
			want:    map[string]stock{keyboard: {10, 0}},
			wantErr: inventory.ErrUnknownProduct,
			wantMsg: "unknown product " + unknown,
		},
		{
			name:    "zero quantity",
			stock:   map[string]stock{keyboard: {10, 0}},
			items:   []inventory.Item{{keyboard, 0}},
			want:    map[string]stock{keyboard: {10, 0}},
			wantErr: inventory.ErrInvalidQuantity,
		},
		{
			name:    "no items",
			stock:   map[string]stock{keyboard: {10, 0}},
			want:    map[string]stock{keyboard: {10, 0}},
			wantErr: inventory.ErrInvalidQuantity,
		},
		{
			name:  "exactly what is available",
			stock: map[string]stock{keyboard: {10, 7}},
			items: []inventory.Item{{keyboard, 3}},
			want:  map[string]stock{keyboard: {10, 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := products(tt.stock)
			err := inventory.Reserve(m, tt.items)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Reserve() error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("Reserve() error = %q, want %q", err, tt.wantMsg)
			}
			if got := snapshot(m); !maps.Equal(got, tt.want) {
				t.Errorf("stock = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRelease(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		stock   map[string]stock
		items   []inventory.Item
		want    map[string]stock
		wantErr error
	}{
		{
			name:  "gives back every item",
			stock: map[string]stock{keyboard: {10, 5}, mouse: {5, 5}},
			items: []inventory.Item{{keyboard, 3}, {mouse, 5}},
			want:  map[string]stock{keyboard: {10, 2}, mouse: {5, 0}},
		},
		{
			name:    "more than reserved changes nothing",
			stock:   map[string]stock{keyboard: {10, 5}, mouse: {5, 1}},
			items:   []inventory.Item{{keyboard, 3}, {mouse, 2}},
			want:    map[string]stock{keyboard: {10, 5}, mouse: {5, 1}},
			wantErr: inventory.ErrInvalidQuantity,
		},
		{
			name:    "unknown product",
			stock:   map[string]stock{keyboard: {10, 5}},
			items:   []inventory.Item{{unknown, 1}},
			want:    map[string]stock{keyboard: {10, 5}},
			wantErr: inventory.ErrUnknownProduct,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := products(tt.stock)
			err := inventory.Release(m, tt.items)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Release() error = %v, want %v", err, tt.wantErr)
			}
			if got := snapshot(m); !maps.Equal(got, tt.want) {
				t.Errorf("stock = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSetTotal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		total, resvd  int64
		set           int64
		wantErr       error
		wantTotal     int64
		wantAvailable int64
	}{
		{name: "raise", total: 10, resvd: 4, set: 20, wantTotal: 20, wantAvailable: 16},
		{name: "lower to reserved", total: 10, resvd: 4, set: 4, wantTotal: 4, wantAvailable: 0},
		{name: "zero with nothing reserved", total: 10, set: 0, wantTotal: 0, wantAvailable: 0},
		{name: "below reserved", total: 10, resvd: 4, set: 3, wantErr: inventory.ErrBelowReserved, wantTotal: 10, wantAvailable: 6},
		{name: "negative", total: 10, set: -1, wantErr: inventory.ErrInvalidQuantity, wantTotal: 10, wantAvailable: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := inventory.Load(keyboard, "Demo keyboard", tt.total, tt.resvd)
			err := p.SetTotal(tt.set)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("SetTotal() error = %v, want %v", err, tt.wantErr)
			}
			if p.Total() != tt.wantTotal || p.Available() != tt.wantAvailable {
				t.Errorf("total, available = %d, %d, want %d, %d", p.Total(), p.Available(), tt.wantTotal, tt.wantAvailable)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		id      string
		total   int64
		wantID  string
		wantErr error
	}{
		{name: "valid", id: keyboard, total: 5, wantID: keyboard},
		{name: "canonical id", id: "{00000000-0000-0000-0000-000000000001}", total: 5, wantID: keyboard},
		{name: "bad id", id: "keyboard", total: 5, wantErr: inventory.ErrInvalidProductID},
		{name: "negative total", id: keyboard, total: -1, wantErr: inventory.ErrInvalidQuantity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := inventory.New(tt.id, "", tt.total)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("New() error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (p.ID() != tt.wantID || p.Available() != tt.total || p.Reserved() != 0) {
				t.Errorf("New() = %s %d/%d", p.ID(), p.Available(), p.Reserved())
			}
		})
	}
}

func TestMergeAndProductIDs(t *testing.T) {
	t.Parallel()
	items := []inventory.Item{{mouse, 1}, {keyboard, 2}, {mouse, 3}}
	merged := inventory.Merge(items)
	if len(merged) != 2 || merged[0] != (inventory.Item{mouse, 4}) || merged[1] != (inventory.Item{keyboard, 2}) {
		t.Errorf("Merge() = %v", merged)
	}
	ids := inventory.ProductIDs(items)
	if len(ids) != 2 || ids[0] != keyboard || ids[1] != mouse {
		t.Errorf("ProductIDs() = %v", ids)
	}
}
