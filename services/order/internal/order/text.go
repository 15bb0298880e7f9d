package order

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Maximum lengths of the text an order holds, in characters (Unicode code points). They are
// part of the API (order.v1 proto comments, README) and enforced by New.
const (
	MaxRecipientLen     = 200
	MaxAddressLineLen   = 200 // line1 and line2
	MaxCityLen          = 100
	MaxPostalCodeLen    = 20
	MaxRequestIDLen     = 200
	MaxPaymentMethodLen = 32
	MaxUnitPriceLen     = 32 // "9999999999999.99" needs 16
	MaxPageTokenLen     = 256
)

// ParseID checks that s is a UUID spelled the canonical way, 8-4-4-4-12 hexadecimal digits in
// either case, and returns it in lower case. Other spellings that a UUID parser would take
// (urn:uuid:…, {…}, 32 bare digits) are refused rather than stored as sent. field names the
// input in the error.
func ParseID(field, s string) (string, error) {
	if len(s) != 36 {
		return "", invalid(field, "must be a UUID such as 123e4567-e89b-12d3-a456-426614174000")
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return "", invalid(field, "must be a UUID such as 123e4567-e89b-12d3-a456-426614174000")
	}
	return id.String(), nil
}

// checkText refuses text longer than max characters, invalid UTF-8 and control characters
// (C0, DEL, C1: NUL, tab and newline included), naming field.
func checkText(field, s string, max int) error {
	if len(s) > max*utf8.UTFMax || utf8.RuneCountInString(s) > max {
		return invalid(field, fmt.Sprintf("must be at most %d characters", max))
	}
	if !utf8.ValidString(s) {
		return invalid(field, "must be valid UTF-8")
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return invalid(field, fmt.Sprintf("must not contain control characters (U+%04X at byte %d)", r, i))
	}
	return nil
}
