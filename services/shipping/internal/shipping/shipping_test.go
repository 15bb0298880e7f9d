package shipping_test

import (
	"bytes"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

var trackingPattern = regexp.MustCompile(`^TRK-[A-Z0-9]{8}$`)

func constant(v float64) func() float64 { return func() float64 { return v } }

func TestFreight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		base, units, want int64
	}{
		{1000, 1, 1150},
		{1000, 3, 1450},
		{0, 2, 300},
		{1000, 0, 1000},
	}
	for _, tt := range tests {
		if got := shipping.Freight(tt.base, tt.units); got != tt.want {
			t.Errorf("Freight(%d, %d) = %d, want %d", tt.base, tt.units, got, tt.want)
		}
	}
}

func TestTrackingCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entropy []byte
		want    string
		wantErr bool
	}{
		{"first letters", []byte{0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0}, "TRK-ABCDEFGH", false},
		{"digits wrap", []byte{26, 35, 36, 71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "TRK-09A9AAAA", false},
		{"biased bytes are skipped", append([]byte{252, 253, 254, 255, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}, make([]byte, 16)...), "TRK-BBBBBBBB", false},
		{"entropy runs out", []byte{1, 2, 3}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := shipping.TrackingCode(bytes.NewReader(tt.entropy))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("TrackingCode = %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	t.Run("real entropy", func(t *testing.T) {
		t.Parallel()
		c, err := shipping.NewCarrier(0, 0, shipping.Env{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for range 100 {
			s, err := c.Schedule("s", "o", "BR", 1)
			if err != nil {
				t.Fatal(err)
			}
			if !trackingPattern.MatchString(s.TrackingCode()) {
				t.Fatalf("tracking code %q does not match %s", s.TrackingCode(), trackingPattern)
			}
			seen[s.TrackingCode()] = true
		}
		if len(seen) < 100 {
			t.Errorf("only %d distinct codes in 100", len(seen))
		}
	})
}

func TestEstimateDelivery(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		random   float64
		wantDays int
	}{
		{0, 3}, {0.19, 3}, {0.2, 4}, {0.5, 5}, {0.79, 6}, {0.8, 7}, {0.9999, 7},
	}
	for _, tt := range tests {
		got := shipping.EstimateDelivery(now, constant(tt.random))
		if want := now.AddDate(0, 0, tt.wantDays); !got.Equal(want) {
			t.Errorf("EstimateDelivery(random %v) = %s, want %s", tt.random, got, want)
		}
	}
}

func TestNewCarrier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		base    int64
		rate    float64
		wantErr bool
	}{
		{"valid", 1000, 0.1, false},
		{"negative base", -1, 0, true},
		{"rate below zero", 1000, -0.1, true},
		{"rate above one", 1000, 1.5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := shipping.NewCarrier(tt.base, tt.rate, shipping.Env{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewCarrier error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, shipping.ErrInvalidCarrier) {
				t.Errorf("error %v is not ErrInvalidCarrier", err)
			}
		})
	}
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	entropy := bytes.Repeat([]byte{7}, 64) // every character is H
	tests := []struct {
		name         string
		country      string
		units        int64
		failureRate  float64
		random       float64
		wantErr      bool
		wantStatus   shipping.Status
		wantReason   string
		wantFreight  int64
		wantDelivery time.Time
	}{
		{"scheduled", "BR", 3, 0, 0.5, false, shipping.StatusScheduled, "", 1450, now.AddDate(0, 0, 5)},
		{"no country still ships", "", 1, 0, 0, false, shipping.StatusScheduled, "", 1150, now.AddDate(0, 0, 3)},
		{"antarctica refused", "AQ", 2, 0, 0.5, false, shipping.StatusFailed, "carrier does not deliver to AQ", 0, time.Time{}},
		{"antarctica in lower case", "aq", 2, 0, 0.5, false, shipping.StatusFailed, "carrier does not deliver to AQ", 0, time.Time{}},
		{"random failure", "BR", 2, 0.5, 0.49, false, shipping.StatusFailed, "carrier unavailable", 0, time.Time{}},
		{"random spared", "BR", 2, 0.5, 0.5, false, shipping.StatusScheduled, "", 1300, now.AddDate(0, 0, 5)},
		{"no units", "BR", 0, 0, 0, true, "", "", 0, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := shipping.NewCarrier(1000, tt.failureRate, shipping.Env{
				Now:     func() time.Time { return now },
				Random:  constant(tt.random),
				Entropy: bytes.NewReader(entropy),
			})
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.Schedule("s1", "o1", tt.country, tt.units)
			if tt.wantErr {
				if !errors.Is(err, shipping.ErrInvalidShipment) {
					t.Fatalf("Schedule error = %v, want ErrInvalidShipment", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Schedule: %v", err)
			}
			if s.Status() != tt.wantStatus || s.Reason() != tt.wantReason || s.FreightMinor() != tt.wantFreight {
				t.Errorf("shipment = %s %q freight %d; want %s %q freight %d",
					s.Status(), s.Reason(), s.FreightMinor(), tt.wantStatus, tt.wantReason, tt.wantFreight)
			}
			if !s.EstimatedDelivery().Equal(tt.wantDelivery) {
				t.Errorf("estimated delivery = %s, want %s", s.EstimatedDelivery(), tt.wantDelivery)
			}
			wantCode := ""
			if tt.wantStatus == shipping.StatusScheduled {
				wantCode = "TRK-HHHHHHHH"
			}
			if s.TrackingCode() != wantCode {
				t.Errorf("tracking code = %q, want %q", s.TrackingCode(), wantCode)
			}
			if s.ID() != "s1" || s.OrderID() != "o1" || s.CountryCode() != tt.country || !s.CreatedAt().Equal(now) {
				t.Errorf("shipment fields = %s %s %s %s", s.ID(), s.OrderID(), s.CountryCode(), s.CreatedAt())
			}
		})
	}
}
