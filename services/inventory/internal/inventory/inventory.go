// Package inventory holds the stock rules: a product's total and reserved quantities, and
// all-or-nothing reservations of an order's items against them.
package inventory

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// Sentinel errors. Errors returned by this package wrap one of them and name the product.
var (
	ErrInvalidProductID  = errors.New("invalid product id")
	ErrInvalidQuantity   = errors.New("invalid quantity")
	ErrUnknownProduct    = errors.New("unknown product")
	ErrInsufficientStock = errors.New("insufficient stock")
	ErrBelowReserved     = errors.New("total below reserved")
)

// ParseProductID validates a product id and returns it in canonical form.
func ParseProductID(s string) (string, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w %q", ErrInvalidProductID, s)
	}
	return id.String(), nil
}

// Product is a product's stock: total is what the warehouse holds, reserved what orders hold of it.
type Product struct {
	id       string
	name     string
	total    int64
	reserved int64
}

// New returns a product with nothing reserved.
func New(id, name string, total int64) (*Product, error) {
	id, err := ParseProductID(id)
	if err != nil {
		return nil, err
	}
	if total < 0 {
		return nil, fmt.Errorf("%w: total %d is negative", ErrInvalidQuantity, total)
	}
	return &Product{id: id, name: name, total: total}, nil
}

// Load rebuilds a product from storage, which already enforces 0 <= reserved <= total.
func Load(id, name string, total, reserved int64) *Product {
	return &Product{id: id, name: name, total: total, reserved: reserved}
}

func (p *Product) ID() string       { return p.id }
func (p *Product) Name() string     { return p.name }
func (p *Product) Total() int64     { return p.total }
func (p *Product) Reserved() int64  { return p.reserved }
func (p *Product) Available() int64 { return p.total - p.reserved }

// SetTotal sets the total stock. It may not drop below what is reserved: those units are promised.
func (p *Product) SetTotal(total int64) error {
	if total < 0 {
		return fmt.Errorf("%w: total %d is negative", ErrInvalidQuantity, total)
	}
	if total < p.reserved {
		return fmt.Errorf("%w: product %s has %d reserved, cannot set total to %d", ErrBelowReserved, p.id, p.reserved, total)
	}
	p.total = total
	return nil
}

// Reservation is the stock held for one order: at most one per order.
type Reservation struct {
	ID      string
	OrderID string
	Status  Status
	Items   []Item
}

// Status is where a reservation stands.
type Status string

const (
	// Held: the reservation holds its items.
	Held Status = "RESERVED"
	// Released: its items were given back.
	Released Status = "RELEASED"
	// Cancelled is the tombstone of an order cancelled before anything was reserved for it: it
	// holds no items and takes the order's one reservation for good.
	Cancelled Status = "CANCELLED"
)

// Item is a quantity of one product.
type Item struct {
	ProductID string
	Quantity  int64
}

// Merge sums the quantities of repeated products, keeping the order of first appearance.
func Merge(items []Item) []Item {
	merged := make([]Item, 0, len(items))
	at := make(map[string]int, len(items))
	for _, it := range items {
		if i, ok := at[it.ProductID]; ok {
			merged[i].Quantity += it.Quantity
			continue
		}
		at[it.ProductID] = len(merged)
		merged = append(merged, it)
	}
	return merged
}

// ProductIDs returns the distinct product ids of items, sorted: the order to lock them in.
func ProductIDs(items []Item) []string {
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.ProductID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Reserve holds every item in products, or nothing: it checks all items (repeated products
// counted together) before it changes any product.
func Reserve(products map[string]*Product, items []Item) error {
	items = Merge(items)
	if len(items) == 0 {
		return fmt.Errorf("%w: no items to reserve", ErrInvalidQuantity)
	}
	return apply(products, items, +1, func(p *Product, q int64) error {
		if q > p.Available() {
			return fmt.Errorf("%w for product %s: requested %d, available %d", ErrInsufficientStock, p.id, q, p.Available())
		}
		return nil
	})
}

// Release gives back items held by Reserve, or nothing when any of them is not held.
func Release(products map[string]*Product, items []Item) error {
	return apply(products, Merge(items), -1, func(p *Product, q int64) error {
		if q > p.reserved {
			return fmt.Errorf("%w: product %s has %d reserved, cannot release %d", ErrInvalidQuantity, p.id, p.reserved, q)
		}
		return nil
	})
}

// apply changes the reserved quantity of products by sign × each item's quantity once every
// item passed allowed, and changes nothing otherwise.
func apply(products map[string]*Product, items []Item, sign int64, allowed func(*Product, int64) error) error {
	for _, it := range items {
		if it.Quantity <= 0 {
			return fmt.Errorf("%w: product %s: quantity %d is not positive", ErrInvalidQuantity, it.ProductID, it.Quantity)
		}
		p, ok := products[it.ProductID]
		if !ok {
			return fmt.Errorf("%w %s", ErrUnknownProduct, it.ProductID)
		}
		if err := allowed(p, it.Quantity); err != nil {
			return err
		}
	}
	for _, it := range items {
		products[it.ProductID].reserved += sign * it.Quantity
	}
	return nil
}
