package payment_test

import (
	"errors"
	"testing"

	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

func constant(v float64) func() float64 { return func() float64 { return v } }

func TestDecide(t *testing.T) {
	t.Parallel()
	const limit = 1_000_000 // 10000.00
	tests := []struct {
		name        string
		method      string
		amount      int64
		declineRate float64
		random      float64
		wantOK      bool
		wantReason  string
	}{
		{"credit card", payment.MethodCreditCard, 4990, 0, 0, true, ""},
		{"debit card", payment.MethodDebitCard, 4990, 0, 0, true, ""},
		{"declined card", payment.MethodDeclinedCard, 4990, 0, 0, false, "card declined"},
		{"unknown method", "cash", 4990, 0, 0, false, `unsupported payment method "cash"`},
		{"at the limit", payment.MethodCreditCard, limit, 0, 0, true, ""},
		{"above the limit", payment.MethodCreditCard, 1_200_000, 0, 0, false, "amount 12000.00 exceeds limit 10000.00"},
		{"one cent above", payment.MethodDebitCard, limit + 1, 0, 0, false, "amount 10000.01 exceeds limit 10000.00"},
		{"random decline", payment.MethodCreditCard, 4990, 0.3, 0.29, false, "declined by issuer"},
		{"random spared", payment.MethodCreditCard, 4990, 0.3, 0.3, true, ""},
		{"rate zero never declines", payment.MethodCreditCard, 4990, 0, 0, true, ""},
		{"rate one always declines", payment.MethodCreditCard, 4990, 1, 0.999, false, "declined by issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := payment.Decide(tt.method, tt.amount, limit, tt.declineRate, constant(tt.random))
			if d.Approved != tt.wantOK || d.Reason != tt.wantReason {
				t.Errorf("Decide = %+v, want approved=%v reason=%q", d, tt.wantOK, tt.wantReason)
			}
		})
	}
}

func TestNewGateway(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		limit   int64
		rate    float64
		random  func() float64
		wantErr bool
	}{
		{"valid", 100, 0.5, constant(0), false},
		{"negative limit", -1, 0, constant(0), true},
		{"rate below zero", 100, -0.1, constant(0), true},
		{"rate above one", 100, 1.1, constant(0), true},
		{"no random source", 100, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := payment.NewGateway(tt.limit, tt.rate, tt.random)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewGateway error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, payment.ErrInvalidGateway) {
				t.Errorf("error %v is not ErrInvalidGateway", err)
			}
		})
	}
}

func TestCharge(t *testing.T) {
	t.Parallel()
	g, err := payment.NewGateway(1_000_000, 0, constant(0))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		id, order  string
		method     string
		amount     int64
		wantErr    bool
		wantStatus payment.Status
		wantReason string
	}{
		{"approved", "p1", "o1", payment.MethodCreditCard, 9980, false, payment.StatusApproved, ""},
		{"declined", "p2", "o2", payment.MethodDeclinedCard, 9980, false, payment.StatusDeclined, "card declined"},
		{"over limit", "p3", "o3", payment.MethodDebitCard, 1_200_000, false, payment.StatusDeclined, "amount 12000.00 exceeds limit 10000.00"},
		{"no id", "", "o1", payment.MethodCreditCard, 100, true, "", ""},
		{"no order", "p1", "", payment.MethodCreditCard, 100, true, "", ""},
		{"negative amount", "p1", "o1", payment.MethodCreditCard, -1, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := payment.Charge(g, tt.id, tt.order, tt.method, tt.amount)
			if tt.wantErr {
				if !errors.Is(err, payment.ErrInvalidPayment) {
					t.Fatalf("Charge error = %v, want ErrInvalidPayment", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Charge: %v", err)
			}
			if p.Status() != tt.wantStatus || p.Reason() != tt.wantReason {
				t.Errorf("payment = %s %q, want %s %q", p.Status(), p.Reason(), tt.wantStatus, tt.wantReason)
			}
			if p.ID() != tt.id || p.OrderID() != tt.order || p.Method() != tt.method || p.AmountMinor() != tt.amount {
				t.Errorf("payment fields = %s %s %s %d", p.ID(), p.OrderID(), p.Method(), p.AmountMinor())
			}
		})
	}
}

func TestReverse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      payment.Status
		wantChanged bool
		wantErr     error
		wantStatus  payment.Status
	}{
		{"approved is reversed", payment.StatusApproved, true, nil, payment.StatusReversed},
		{"reversed twice is a no-op", payment.StatusReversed, false, nil, payment.StatusReversed},
		{"declined cannot be reversed", payment.StatusDeclined, false, payment.ErrNotReversible, payment.StatusDeclined},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := payment.Load("p1", "o1", payment.MethodCreditCard, 100, tt.status, "")
			changed, err := p.Reverse("inventory failed")
			if changed != tt.wantChanged || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Reverse = %v, %v; want %v, %v", changed, err, tt.wantChanged, tt.wantErr)
			}
			if p.Status() != tt.wantStatus {
				t.Errorf("status = %s, want %s", p.Status(), tt.wantStatus)
			}
		})
	}
	t.Run("second reverse reports no change", func(t *testing.T) {
		t.Parallel()
		p := payment.Load("p1", "o1", payment.MethodCreditCard, 100, payment.StatusApproved, "")
		if changed, err := p.Reverse("first"); !changed || err != nil {
			t.Fatalf("first Reverse = %v, %v", changed, err)
		}
		if changed, err := p.Reverse("second"); changed || err != nil {
			t.Fatalf("second Reverse = %v, %v", changed, err)
		}
		if p.Reason() != "first" {
			t.Errorf("reason = %q, want the first one kept", p.Reason())
		}
	})
}

func TestChargeIdempotent(t *testing.T) {
	t.Parallel()
	draws := 0
	// Every other draw declines: a second charge that reached the issuer would flip the answer.
	g, err := payment.NewGateway(1_000_000, 0.5, func() float64 { draws++; return float64(draws%2) * 0.9 })
	if err != nil {
		t.Fatal(err)
	}
	first, err := payment.Charge(g, "p1", "order-1", payment.MethodCreditCard, 500)
	if err != nil {
		t.Fatal(err)
	}
	again, err := payment.Charge(g, "p2", "order-1", payment.MethodCreditCard, 500)
	if err != nil {
		t.Fatal(err)
	}
	if draws != 1 || again.Status() != first.Status() || again.Reason() != first.Reason() {
		t.Errorf("repeat charged again: %d draws, %s then %s", draws, first.Status(), again.Status())
	}
	if d := g.Charge("order-1", payment.MethodCreditCard, 600); d.Approved || d.Reason != "idempotency key reused for a different charge" {
		t.Errorf("reused key for another amount: %+v", d)
	}
	// The first draw approved; a new key draws again, and this time is declined.
	if d := g.Charge("order-2", payment.MethodCreditCard, 500); !first.Approved() || draws != 2 || d.Approved {
		t.Errorf("a new key was not charged: %d draws, %+v", draws, d)
	}
}
