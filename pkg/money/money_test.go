package money_test

import (
	"errors"
	"math"
	"testing"

	"github.com/ordersaga/ordersaga/pkg/money"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		err  error
	}{
		{"49.90", 4990, nil},
		{"5", 500, nil},
		{"5.5", 550, nil},
		{"0", 0, nil},
		{"0.01", 1, nil},
		{"007.10", 710, nil},
		{"9999999999999.99", 999999999999999, nil},
		{"", 0, money.ErrEmpty},
		{"-1.00", 0, money.ErrNegative},
		{"1.234", 0, money.ErrPrecision},
		{"abc", 0, money.ErrSyntax},
		{"1e3", 0, money.ErrSyntax},
		{"1.", 0, money.ErrSyntax},
		{".5", 0, money.ErrSyntax},
		{"+1", 0, money.ErrSyntax},
		{" 1", 0, money.ErrSyntax},
		{"1,50", 0, money.ErrSyntax},
		{"10000000000000", 0, money.ErrTooLarge},
	}
	for _, tt := range tests {
		got, err := money.Parse(tt.in)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for minor, want := range map[int64]string{
		0: "0.00", 1: "0.01", 4990: "49.90", 1200000: "12000.00", -150: "-1.50",
		math.MinInt64: "-92233720368547758.08",
	} {
		if got := money.Format(minor); got != want {
			t.Errorf("Format(%d) = %q, want %q", minor, got, want)
		}
	}
}
