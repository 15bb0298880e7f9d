// Package money parses and formats exact amounts. Amounts travel as decimal strings in major
// units ("49.90") at the edges and as int64 minor units (cents) everywhere else: never a float.
package money

import (
	"errors"
	"strconv"
	"strings"
)

// Errors of Parse; the message says what is wrong with the text.
var (
	ErrEmpty     = errors.New("must not be empty")
	ErrNegative  = errors.New("must not be negative")
	ErrSyntax    = errors.New("must be a decimal number such as 49.90")
	ErrPrecision = errors.New("must have at most 2 decimal places")
	ErrTooLarge  = errors.New("is too large")
)

// maxMajorDigits bounds the integer part so that parsing can never overflow int64.
const maxMajorDigits = 13

// Parse parses an exact, non-negative decimal amount in major units with at most two decimal
// places ("49.90", "5", "5.5") into minor units.
func Parse(s string) (int64, error) {
	if s == "" {
		return 0, ErrEmpty
	}
	if strings.HasPrefix(s, "-") {
		return 0, ErrNegative
	}
	major, minor, hasDot := strings.Cut(s, ".")
	if major == "" || !digits(major) || (hasDot && (minor == "" || !digits(minor))) {
		return 0, ErrSyntax
	}
	if len(minor) > 2 {
		return 0, ErrPrecision
	}
	major = strings.TrimLeft(major, "0")
	if len(major) > maxMajorDigits {
		return 0, ErrTooLarge
	}
	var m int64
	if major != "" {
		n, err := strconv.ParseInt(major, 10, 64)
		if err != nil {
			return 0, ErrTooLarge
		}
		m = n * 100
	}
	for len(minor) < 2 {
		minor += "0"
	}
	cents, _ := strconv.ParseInt(minor, 10, 64) // two checked digits
	return m + cents, nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Format renders minor units in major units with two decimals: 4990 → "49.90".
func Format(minor int64) string {
	sign := ""
	v := uint64(minor)
	if minor < 0 {
		sign = "-"
		v = uint64(-(minor + 1)) + 1 // also right for math.MinInt64
	}
	cents := v % 100
	return sign + strconv.FormatUint(v/100, 10) + "." + strconv.FormatUint(cents/10, 10) + strconv.FormatUint(cents%10, 10)
}
