package order

import (
	"bytes"
	"testing"
	"time"
)

func TestRequestFingerprint(t *testing.T) {
	t.Parallel()
	fingerprint := func(edit func(*Params)) []byte {
		t.Helper()
		p := validParams()
		edit(&p)
		o, err := New(p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return o.RequestFingerprint()
	}
	base := fingerprint(func(*Params) {})

	same := []struct {
		name string
		edit func(*Params)
	}{
		{"another key", func(p *Params) { p.RequestID = "req-2" }},
		{"no key", func(p *Params) { p.RequestID = "" }},
		{"country in lower case", func(p *Params) { p.ShippingAddress.CountryCode = " BR " }},
	}
	for _, tc := range same {
		if got := fingerprint(tc.edit); !bytes.Equal(got, base) {
			t.Errorf("%s: fingerprint changed", tc.name)
		}
	}
	lower := fingerprint(func(p *Params) { p.CustomerID = "abcdef00-1111-1111-1111-111111111111" })
	if upper := fingerprint(func(p *Params) { p.CustomerID = "ABCDEF00-1111-1111-1111-111111111111" }); !bytes.Equal(lower, upper) {
		t.Error("upper-case customer: fingerprint changed")
	}
	lower = fingerprint(func(p *Params) { p.Items[0].ProductID = "abcdef00-0000-0000-0000-000000000001" })
	if upper := fingerprint(func(p *Params) { p.Items[0].ProductID = "ABCDEF00-0000-0000-0000-000000000001" }); !bytes.Equal(lower, upper) {
		t.Error("upper-case product: fingerprint changed")
	}
	// Other spellings of a UUID ({…}, urn:uuid:…, bare digits) never reach a fingerprint: New
	// refuses them (TestNewValidation).
	differ := []struct {
		name string
		edit func(*Params)
	}{
		{"customer", func(p *Params) { p.CustomerID = "22222222-2222-2222-2222-222222222222" }},
		{"method", func(p *Params) { p.PaymentMethod = "debit_card" }},
		{"quantity", func(p *Params) { p.Items[0].Quantity = 3 }},
		{"price", func(p *Params) { p.Items[1].UnitPrice = 6 }},
		{"product", func(p *Params) { p.Items[1].ProductID = "00000000-0000-0000-0000-000000000003" }},
		{"items swapped", func(p *Params) { p.Items[0], p.Items[1] = p.Items[1], p.Items[0] }},
		{"item dropped", func(p *Params) { p.Items = p.Items[:1] }},
		{"city", func(p *Params) { p.ShippingAddress.City = "Santos" }},
		{"field boundary", func(p *Params) { p.ShippingAddress.City, p.ShippingAddress.PostalCode = "São", " Paulo" }},
		{"no address", func(p *Params) { p.ShippingAddress = nil }},
	}
	for _, tc := range differ {
		if got := fingerprint(tc.edit); bytes.Equal(got, base) {
			t.Errorf("%s: fingerprint unchanged", tc.name)
		}
	}
}
