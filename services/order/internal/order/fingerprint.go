package order

import (
	"crypto/sha256"
	"strconv"
)

// RequestFingerprint identifies what the client asked for: customer, payment method, items in
// their order, and shipping address, each in its canonical form (the form New stores), but not
// the idempotency key itself. Two requests with one key are the same request exactly when their
// fingerprints are equal.
//
// The encoding is a SHA-256 over length-prefixed fields ("<bytes>:<value>"), so that no value
// can pass for another's boundary. The migration that introduced the fingerprint computes the
// same bytes in SQL for orders stored before it (order_request_fingerprint); keep the two equal.
func (o *Order) RequestFingerprint() []byte {
	var b []byte
	put := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	put("order.v1.CreateOrder")
	put(o.customerID)
	put(o.paymentMethod)
	put(strconv.Itoa(len(o.items)))
	for _, it := range o.items {
		put(it.ProductID)
		put(strconv.FormatInt(int64(it.Quantity), 10))
		put(strconv.FormatInt(int64(it.UnitPrice), 10))
	}
	var a Address
	if o.address != nil {
		a = *o.address
	}
	put(a.Recipient)
	put(a.Line1)
	put(a.Line2)
	put(a.City)
	put(a.PostalCode)
	put(a.CountryCode)
	sum := sha256.Sum256(b)
	return sum[:]
}
