package order

import (
	"fmt"
	"math"

	"github.com/ordersaga/ordersaga/pkg/money"
)

// Money is an exact amount in minor units (cents). Prices never pass through a float.
type Money int64

// ParseMoney parses an exact, non-negative decimal amount in major units with at most two
// decimal places ("49.90", "5", "5.5"). field names the input in the error.
func ParseMoney(field, s string) (Money, error) {
	if len(s) > MaxUnitPriceLen {
		return 0, invalid(field, fmt.Sprintf("must be at most %d characters", MaxUnitPriceLen))
	}
	m, err := money.Parse(s)
	if err != nil {
		return 0, invalid(field, err.Error())
	}
	return Money(m), nil
}

// String formats m in major units with two decimals: "49.90".
func (m Money) String() string { return money.Format(int64(m)) }

// mul returns m*n, or false on overflow.
func (m Money) mul(n int64) (Money, bool) {
	if m < 0 || n < 0 {
		return 0, false
	}
	if n != 0 && int64(m) > math.MaxInt64/n {
		return 0, false
	}
	return Money(int64(m) * n), true
}

// add returns m+o, or false on overflow.
func (m Money) add(o Money) (Money, bool) {
	if o > 0 && m > math.MaxInt64-o {
		return 0, false
	}
	return m + o, true
}
