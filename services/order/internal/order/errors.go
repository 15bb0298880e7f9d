package order

import "errors"

var (
	// ErrInvalid is matched by every validation error (see FieldError).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound means no order has the given id.
	ErrNotFound = errors.New("order not found")
	// ErrRequestIDReused means the client's idempotency key already names an order of the same
	// customer that was placed with a different request.
	ErrRequestIDReused = errors.New("request_id already used for a different request")
	// ErrRequestIDTaken means the client's idempotency key already names an order of another
	// customer. Keys are per customer, but release 2 keeps them unique across customers too, so
	// that release 1 keeps working beside it (docs/upgrades.md); a later release lifts this.
	ErrRequestIDTaken = errors.New("request_id already used by another customer")
	// ErrUnknownEvent means an event kind the saga does not define.
	ErrUnknownEvent = errors.New("unknown event kind")
)

// FieldError is a validation error that names the offending field, e.g.
// "items[0].quantity: must be greater than 0".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrInvalid) hold for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, msg string) error { return &FieldError{Field: field, Msg: msg} }
