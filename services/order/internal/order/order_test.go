package order

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestApplyEveryPair covers every (status, event) pair: the whole transition table.
func TestApplyEveryPair(t *testing.T) {
	t.Parallel()
	const (
		P  = StatusPending
		PA = StatusPaymentApproved
		IR = StatusInventoryReserved
		C  = StatusConfirmed
		PF = StatusPaymentFailed
		IF = StatusInventoryFailed
		SF = StatusShippingFailed
		X  = StatusCancelled
	)
	want := map[Status]map[EventKind]Status{
		P:  {PaymentApproved: PA, PaymentFailed: PF, PaymentReversed: X, InventoryReserved: IR, InventoryFailed: IF, ShippingScheduled: C, ShippingFailed: SF, DeadlinePassed: X},
		PA: {PaymentApproved: PA, PaymentFailed: PA, PaymentReversed: X, InventoryReserved: IR, InventoryFailed: IF, ShippingScheduled: C, ShippingFailed: SF, DeadlinePassed: X},
		IR: {PaymentApproved: IR, PaymentFailed: IR, PaymentReversed: X, InventoryReserved: IR, InventoryFailed: IR, ShippingScheduled: C, ShippingFailed: SF, DeadlinePassed: X},
		C:  {PaymentApproved: C, PaymentFailed: C, PaymentReversed: C, InventoryReserved: C, InventoryFailed: C, ShippingScheduled: C, ShippingFailed: C, DeadlinePassed: C},
		PF: {PaymentApproved: PF, PaymentFailed: PF, PaymentReversed: PF, InventoryReserved: PF, InventoryFailed: PF, ShippingScheduled: PF, ShippingFailed: PF, DeadlinePassed: PF},
		IF: {PaymentApproved: IF, PaymentFailed: IF, PaymentReversed: X, InventoryReserved: IF, InventoryFailed: IF, ShippingScheduled: IF, ShippingFailed: IF, DeadlinePassed: X},
		SF: {PaymentApproved: SF, PaymentFailed: SF, PaymentReversed: X, InventoryReserved: SF, InventoryFailed: SF, ShippingScheduled: SF, ShippingFailed: SF, DeadlinePassed: X},
		X:  {PaymentApproved: X, PaymentFailed: X, PaymentReversed: X, InventoryReserved: X, InventoryFailed: X, ShippingScheduled: X, ShippingFailed: X, DeadlinePassed: X},
	}
	if len(want) != len(Statuses) {
		t.Fatalf("table covers %d statuses, want %d", len(want), len(Statuses))
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, from := range Statuses {
		if len(want[from]) != len(EventKinds) {
			t.Fatalf("%s: table covers %d events, want %d", from, len(want[from]), len(EventKinds))
		}
		for _, kind := range EventKinds {
			o := Restore(Snapshot{ID: "o", Status: from})
			change, changed, err := o.Apply(Event{Kind: kind, Reason: "why", TrackingCode: "TRK-12345678"}, now)
			if err != nil {
				t.Fatalf("%s + %s: %v", from, kind, err)
			}
			to := want[from][kind]
			if o.Status() != to {
				t.Errorf("%s + %s = %s, want %s", from, kind, o.Status(), to)
			}
			if changed != (to != from) {
				t.Errorf("%s + %s: changed = %v, want %v", from, kind, changed, to != from)
			}
			if changed && (change.Status != to || !change.At.Equal(now) || len(o.History()) != 1) {
				t.Errorf("%s + %s: change %+v, history %v", from, kind, change, o.History())
			}
			if !changed && len(o.History()) != 0 {
				t.Errorf("%s + %s: history written without a change", from, kind)
			}
			if from.Terminal() && changed {
				t.Errorf("terminal %s changed on %s", from, kind)
			}
		}
	}
}

func TestApplyDetails(t *testing.T) {
	t.Parallel()
	now := time.Now()
	o := Restore(Snapshot{Status: StatusPending})
	if _, _, err := o.Apply(Event{Kind: "order.exploded"}, now); !errors.Is(err, ErrUnknownEvent) {
		t.Fatalf("unknown kind: err = %v", err)
	}

	o = Restore(Snapshot{Status: StatusInventoryReserved})
	o.Apply(Event{Kind: ShippingScheduled, TrackingCode: "TRK-ABCDEFGH"}, now)
	if o.TrackingCode() != "TRK-ABCDEFGH" || o.FailureReason() != "" {
		t.Errorf("confirmed: tracking %q, reason %q", o.TrackingCode(), o.FailureReason())
	}

	// The reversal keeps the failure that caused it.
	o = Restore(Snapshot{Status: StatusPaymentApproved})
	o.Apply(Event{Kind: InventoryFailed, Reason: "product 1: insufficient stock"}, now)
	o.Apply(Event{Kind: PaymentReversed, Reason: "compensation"}, now)
	if o.Status() != StatusCancelled || o.FailureReason() != "product 1: insufficient stock" {
		t.Errorf("cancelled: %s %q", o.Status(), o.FailureReason())
	}
	if len(o.History()) != 2 || o.History()[1].Reason != "compensation" {
		t.Errorf("history %+v", o.History())
	}

	// A reversal that overtook the failure still says why.
	o = Restore(Snapshot{Status: StatusPaymentApproved})
	o.Apply(Event{Kind: PaymentReversed, Reason: "inventory failed"}, now)
	if o.FailureReason() != "inventory failed" {
		t.Errorf("reason %q", o.FailureReason())
	}

	// The deadline names itself, and keeps the failure it interrupted.
	o = Restore(Snapshot{Status: StatusPaymentApproved})
	o.Apply(Event{Kind: DeadlinePassed, Reason: "saga deadline passed"}, now)
	if o.Status() != StatusCancelled || o.FailureReason() != "saga deadline passed" {
		t.Errorf("deadline: %s %q", o.Status(), o.FailureReason())
	}
	o = Restore(Snapshot{Status: StatusShippingFailed, FailureReason: "carrier unavailable"})
	o.Apply(Event{Kind: DeadlinePassed, Reason: "saga deadline passed"}, now)
	if o.FailureReason() != "saga deadline passed (after: carrier unavailable)" {
		t.Errorf("deadline after a failure: reason %q", o.FailureReason())
	}
	if h := o.History(); len(h) != 1 || h[0].Reason != "saga deadline passed" {
		t.Errorf("deadline history %+v", h)
	}

	// A failure without a reason still records one.
	o = Restore(Snapshot{Status: StatusPending})
	o.Apply(Event{Kind: PaymentFailed}, now)
	if o.FailureReason() != "payment.failed" {
		t.Errorf("reason %q", o.FailureReason())
	}
}

func TestParseMoney(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Money
		err  string
	}{
		{in: "49.90", want: 4990},
		{in: "5", want: 500},
		{in: "5.5", want: 550},
		{in: "0", want: 0},
		{in: "0.01", want: 1},
		{in: "007.10", want: 710},
		{in: "9999999999999.99", want: 999999999999999},
		{in: "", err: "must not be empty"},
		{in: "-1", err: "must not be negative"},
		{in: "1.234", err: "at most 2 decimal places"},
		{in: "1e3", err: "decimal number"},
		{in: "abc", err: "decimal number"},
		{in: "+5", err: "decimal number"},
		{in: ".5", err: "decimal number"},
		{in: "5.", err: "decimal number"},
		{in: " 5", err: "decimal number"},
		{in: "1.2.3", err: "decimal number"},
		{in: "NaN", err: "decimal number"},
		{in: "99999999999999", err: "too large"},
		{in: strings.Repeat("1", MaxUnitPriceLen+1), err: "at most 32 characters"},
		{in: "1\x00", err: "decimal number"},
	} {
		got, err := ParseMoney("price", tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "price: ") || !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseMoney(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseMoney(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestMoneyString(t *testing.T) {
	t.Parallel()
	for m, want := range map[Money]string{0: "0.00", 1: "0.01", 10: "0.10", 4990: "49.90", 9980: "99.80", 123456: "1234.56", -5: "-0.05"} {
		if got := m.String(); got != want {
			t.Errorf("Money(%d) = %q, want %q", int64(m), got, want)
		}
	}
}

func validParams() Params {
	return Params{
		CustomerID:    "11111111-1111-1111-1111-111111111111",
		PaymentMethod: "credit_card",
		Items: []Item{
			{ProductID: "00000000-0000-0000-0000-000000000001", Quantity: 2, UnitPrice: 4990},
			{ProductID: "00000000-0000-0000-0000-000000000002", Quantity: 1, UnitPrice: 5},
		},
		ShippingAddress: &Address{City: "São Paulo", CountryCode: "br"},
		RequestID:       "req-1",
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)
	o, err := New(validParams(), now)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status() != StatusPending || o.Total() != 9985 || o.CountryCode() != "BR" || o.RequestID() != "req-1" {
		t.Errorf("order %+v", o)
	}
	if !o.CreatedAt().Equal(now.Truncate(time.Microsecond)) || len(o.History()) != 1 || o.History()[0].Status != StatusPending {
		t.Errorf("created %v, history %+v", o.CreatedAt(), o.History())
	}
	if o.ID() == "" {
		t.Error("no id")
	}
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		edit  func(*Params)
		field string
	}{
		{"customer", func(p *Params) { p.CustomerID = "nope" }, "customer_id"},
		{"method", func(p *Params) { p.PaymentMethod = "cash" }, "payment_method"},
		{"no items", func(p *Params) { p.Items = nil }, "items"},
		{"too many items", func(p *Params) { p.Items = make([]Item, MaxItems+1) }, "items"},
		{"product", func(p *Params) { p.Items[1].ProductID = "x" }, "items[1].product_id"},
		{"zero quantity", func(p *Params) { p.Items[0].Quantity = 0 }, "items[0].quantity"},
		{"negative quantity", func(p *Params) { p.Items[0].Quantity = -3 }, "items[0].quantity"},
		{"huge quantity", func(p *Params) { p.Items[0].Quantity = MaxQuantity + 1 }, "items[0].quantity"},
		{"negative price", func(p *Params) { p.Items[0].UnitPrice = -1 }, "items[0].unit_price"},
		{"overflow", func(p *Params) { p.Items[0].UnitPrice = 1 << 62 }, "items[0]"},
		{"country", func(p *Params) { p.ShippingAddress.CountryCode = "BRA" }, "shipping_address.country_code"},
		{"country digits", func(p *Params) { p.ShippingAddress.CountryCode = "1A" }, "shipping_address.country_code"},
		{"request id", func(p *Params) { p.RequestID = strings.Repeat("x", MaxRequestIDLen+1) }, "request_id"},
		{"request id newline", func(p *Params) { p.RequestID = "a\nb" }, "request_id"},
		{"customer urn", func(p *Params) { p.CustomerID = "urn:uuid:11111111-1111-1111-1111-111111111111" }, "customer_id"},
		{"customer braces", func(p *Params) { p.CustomerID = "{11111111-1111-1111-1111-111111111111}" }, "customer_id"},
		{"customer bare digits", func(p *Params) { p.CustomerID = "11111111111111111111111111111111" }, "customer_id"},
		{"product urn", func(p *Params) { p.Items[0].ProductID = "urn:uuid:00000000-0000-0000-0000-000000000001" }, "items[0].product_id"},
		{"product NUL", func(p *Params) { p.Items[1].ProductID = "00000000-0000-0000-0000-00000000000\x00" }, "items[1].product_id"},
		{"method NUL", func(p *Params) { p.PaymentMethod = "credit_card\x00" }, "payment_method"},
		{"method long", func(p *Params) { p.PaymentMethod = strings.Repeat("c", 3<<20) }, "payment_method"},
		{"recipient 3 MB", func(p *Params) { p.ShippingAddress.Recipient = strings.Repeat("a", 3<<20) }, "shipping_address.recipient"},
		{"recipient long", func(p *Params) { p.ShippingAddress.Recipient = strings.Repeat("é", MaxRecipientLen+1) }, "shipping_address.recipient"},
		{"recipient NUL", func(p *Params) { p.ShippingAddress.Recipient = "Ada\x00Lovelace" }, "shipping_address.recipient"},
		{"line1 long", func(p *Params) { p.ShippingAddress.Line1 = strings.Repeat("x", MaxAddressLineLen+1) }, "shipping_address.line1"},
		{"line1 tab", func(p *Params) { p.ShippingAddress.Line1 = "1\tMain St" }, "shipping_address.line1"},
		{"line2 C1 control", func(p *Params) { p.ShippingAddress.Line2 = "flat \u0085 2" }, "shipping_address.line2"},
		{"line2 DEL", func(p *Params) { p.ShippingAddress.Line2 = "\x7f" }, "shipping_address.line2"},
		{"city long", func(p *Params) { p.ShippingAddress.City = strings.Repeat("x", MaxCityLen+1) }, "shipping_address.city"},
		{"city bad UTF-8", func(p *Params) { p.ShippingAddress.City = "S\xe3o Paulo" }, "shipping_address.city"},
		{"postal code long", func(p *Params) { p.ShippingAddress.PostalCode = strings.Repeat("9", MaxPostalCodeLen+1) }, "shipping_address.postal_code"},
		{"postal code newline", func(p *Params) { p.ShippingAddress.PostalCode = "01000\r\n" }, "shipping_address.postal_code"},
		{"country NUL", func(p *Params) { p.ShippingAddress.CountryCode = "B\x00" }, "shipping_address.country_code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := validParams()
			tc.edit(&p)
			_, err := New(p, time.Now())
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
	// Every text at its maximum, in characters that take several bytes, is accepted.
	p := validParams()
	p.ShippingAddress = &Address{
		Recipient:   strings.Repeat("é", MaxRecipientLen),
		Line1:       strings.Repeat("語", MaxAddressLineLen),
		Line2:       strings.Repeat("😀", MaxAddressLineLen),
		City:        strings.Repeat("ü", MaxCityLen),
		PostalCode:  strings.Repeat("9", MaxPostalCodeLen),
		CountryCode: " pt ",
	}
	p.RequestID = strings.Repeat("r", MaxRequestIDLen)
	if o, err := New(p, time.Now()); err != nil || o.CountryCode() != "PT" {
		t.Fatalf("longest order: %v", err)
	}
	// Optional parts may be left out.
	p = validParams()
	p.ShippingAddress, p.RequestID = nil, ""
	if _, err := New(p, time.Now()); err != nil {
		t.Fatalf("minimal order: %v", err)
	}
}

func TestNewCanonicalIDs(t *testing.T) {
	t.Parallel()
	p := validParams()
	p.CustomerID = "ABCDEF00-1111-4111-8111-111111111111"
	p.Items[0].ProductID = "ABCDEF00-0000-4000-8000-000000000001"
	o, err := New(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if o.CustomerID() != "abcdef00-1111-4111-8111-111111111111" || o.Items()[0].ProductID != "abcdef00-0000-4000-8000-000000000001" {
		t.Errorf("ids not canonical: %s %s", o.CustomerID(), o.Items()[0].ProductID)
	}
}

func TestParseID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"123e4567-e89b-12d3-a456-426614174000":          "123e4567-e89b-12d3-a456-426614174000",
		"123E4567-E89B-12D3-A456-426614174000":          "123e4567-e89b-12d3-a456-426614174000",
		"urn:uuid:123e4567-e89b-12d3-a456-426614174000": "",
		"{123e4567-e89b-12d3-a456-426614174000}":        "",
		"123e4567e89b12d3a456426614174000":              "",
		"123e4567-e89b-12d3-a456-42661417400g":          "",
		"123e4567+e89b-12d3-a456-426614174000":          "",
		"":                                              "",
	} {
		got, err := ParseID("id", in)
		if want == "" {
			if err == nil || !strings.HasPrefix(err.Error(), "id: ") {
				t.Errorf("ParseID(%q) = %q, %v, want an error naming id", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseID(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
}
