package order

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// fields are the names a validation error may carry, items[n] standing for any index.
var fields = regexp.MustCompile(`^(customer_id|payment_method|items|items\[\d+\](\.(product_id|quantity|unit_price))?|` +
	`shipping_address\.(recipient|line1|line2|city|postal_code|country_code)|request_id)$`)

var canonicalID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// FuzzNew: New never panics; it either refuses with a FieldError naming a field of the
// request, or returns an order whose ids are canonical and whose text is within the documented
// lengths, valid UTF-8 and free of control characters: what storage can always take.
func FuzzNew(f *testing.F) {
	f.Add("11111111-1111-1111-1111-111111111111", "credit_card", "00000000-0000-0000-0000-000000000001", int32(2), "49.90",
		"Ada", "1 Main St", "", "Recife", "50000-000", "br", "req-1")
	f.Add("urn:uuid:11111111-1111-1111-1111-111111111111", "debit_card", "{00000000-0000-0000-0000-000000000001}", int32(0), "-1",
		"Ada\x00", "\t", "\u0085", "S\xe3o", "0100\n", "B\x00", "r\r")
	f.Add("11111111-1111-1111-1111-11111111111G", "declined_card", "00000000-0000-0000-0000-00000000000A", int32(1_000_001), "1.234",
		strings.Repeat("a", 201), "", "", "", "", "AQ", strings.Repeat("k", 201))
	f.Fuzz(func(t *testing.T, customer, method, product string, quantity int32, price,
		recipient, line1, line2, city, postal, country, requestID string) {
		p := Params{
			CustomerID:    customer,
			PaymentMethod: method,
			ShippingAddress: &Address{Recipient: recipient, Line1: line1, Line2: line2, City: city,
				PostalCode: postal, CountryCode: country},
			RequestID: requestID,
		}
		unitPrice, err := ParseMoney("items[0].unit_price", price)
		if err != nil {
			checkFieldError(t, err)
			return
		}
		p.Items = []Item{{ProductID: product, Quantity: quantity, UnitPrice: unitPrice}}
		o, err := New(p, time.Now())
		if err != nil {
			checkFieldError(t, err)
			return
		}
		if !canonicalID.MatchString(o.CustomerID()) || !canonicalID.MatchString(o.Items()[0].ProductID) {
			t.Fatalf("ids not canonical: %q %q", o.CustomerID(), o.Items()[0].ProductID)
		}
		if !validMethod(o.PaymentMethod()) {
			t.Fatalf("payment method %q accepted", o.PaymentMethod())
		}
		a := o.ShippingAddress()
		for _, tc := range []struct {
			value string
			max   int
		}{
			{a.Recipient, MaxRecipientLen}, {a.Line1, MaxAddressLineLen}, {a.Line2, MaxAddressLineLen},
			{a.City, MaxCityLen}, {a.PostalCode, MaxPostalCodeLen}, {o.RequestID(), MaxRequestIDLen},
		} {
			if utf8.RuneCountInString(tc.value) > tc.max || !utf8.ValidString(tc.value) || strings.IndexFunc(tc.value, unicode.IsControl) >= 0 {
				t.Fatalf("text %q accepted", tc.value)
			}
		}
		if c := o.CountryCode(); c != "" && !countryCode(c) {
			t.Fatalf("country %q accepted", c)
		}
		if o.Total() != Money(int64(unitPrice)*int64(quantity)) || o.Total() < 0 {
			t.Fatalf("total %d of %d x %d", o.Total(), quantity, unitPrice)
		}
	})
}

func checkFieldError(t *testing.T, err error) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || !fields.MatchString(fe.Field) {
		t.Fatalf("error %v is not a FieldError naming a request field", err)
	}
	if len(fe.Msg) > 200 {
		t.Fatalf("error message of %d bytes: it must not echo the input", len(fe.Msg))
	}
}
