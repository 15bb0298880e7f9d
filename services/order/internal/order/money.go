package order

import (
	"math"
	"strconv"
	"strings"
)

// Money is an exact amount in minor units (cents). Prices never pass through a float.
type Money int64

// maxMajorDigits bounds the integer part of a price so that parsing can never overflow.
const maxMajorDigits = 13

// ParseMoney parses an exact, non-negative decimal amount in major units with at most two
// decimal places ("49.90", "5", "5.5"). field names the input in the error.
func ParseMoney(field, s string) (Money, error) {
	if s == "" {
		return 0, invalid(field, "must not be empty")
	}
	if strings.HasPrefix(s, "-") {
		return 0, invalid(field, "must not be negative")
	}
	major, minor, hasDot := strings.Cut(s, ".")
	if major == "" || !digits(major) || (hasDot && (minor == "" || !digits(minor))) {
		return 0, invalid(field, "must be a decimal number such as 49.90")
	}
	if len(minor) > 2 {
		return 0, invalid(field, "must have at most 2 decimal places")
	}
	major = strings.TrimLeft(major, "0")
	if len(major) > maxMajorDigits {
		return 0, invalid(field, "is too large")
	}
	var m int64
	if major != "" {
		n, err := strconv.ParseInt(major, 10, 64)
		if err != nil {
			return 0, invalid(field, "is too large")
		}
		m = n * 100
	}
	for len(minor) < 2 {
		minor += "0"
	}
	cents, _ := strconv.ParseInt(minor, 10, 64) // two checked digits
	return Money(m + cents), nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// String formats m in major units with two decimals: "49.90".
func (m Money) String() string {
	sign := ""
	v := uint64(m)
	if m < 0 {
		sign = "-"
		v = uint64(-(m + 1)) + 1 // also right for math.MinInt64
	}
	cents := v % 100
	s := strconv.FormatUint(v/100, 10) + "." + strconv.FormatUint(cents/10, 10) + strconv.FormatUint(cents%10, 10)
	return sign + s
}

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
