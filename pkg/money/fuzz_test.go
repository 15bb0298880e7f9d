package money_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/ordersaga/ordersaga/pkg/money"
)

// FuzzParse: Parse never panics, fails only with its own errors, and what it accepts is a
// plain decimal that Format writes back to the same amount.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"49.90", "5", "5.5", "0", "007.10", "9999999999999.99", "99999999999999",
		"", "-1", "1.234", "1e3", "+5", ".5", "5.", " 5", "NaN", "0x10", "1_000", "٣", "1.2.3", "\x00", "1\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := money.Parse(s)
		if err != nil {
			for _, e := range []error{money.ErrEmpty, money.ErrNegative, money.ErrSyntax, money.ErrPrecision, money.ErrTooLarge} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("Parse(%q): unexpected error %v", s, err)
		}
		if m < 0 {
			t.Fatalf("Parse(%q) = %d, negative", s, m)
		}
		if strings.Trim(s, "0123456789.") != "" {
			t.Fatalf("Parse(%q) accepted a character outside digits and the point", s)
		}
		back, err := money.Parse(money.Format(m))
		if err != nil || back != m {
			t.Fatalf("Parse(Format(%d)) = %d, %v", m, back, err)
		}
		if whole, _, _ := strings.Cut(s, "."); strings.TrimLeft(whole, "0") != "" {
			if n, err := strconv.ParseInt(strings.TrimLeft(whole, "0"), 10, 64); err != nil || n != m/100 {
				t.Fatalf("Parse(%q) = %d: the whole part disagrees", s, m)
			}
		}
	})
}
