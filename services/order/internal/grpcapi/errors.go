package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// ErrorDomain and the reasons below name errors in google.rpc.ErrorInfo details.
const (
	ErrorDomain = "ordersaga.order.v1"
	// RequestIDReused: CreateOrder's request_id already names an order of the same customer
	// that was placed with a different request (ALREADY_EXISTS).
	RequestIDReused = "REQUEST_ID_REUSED"
	// RequestIDTaken: CreateOrder's request_id already names an order of another customer
	// (ALREADY_EXISTS). Keys are per customer, but stay unique across customers too until
	// release 1 no longer runs (docs/upgrades.md, "Pending contract steps").
	RequestIDTaken = "REQUEST_ID_TAKEN"
)

// error maps a domain or storage error to the gRPC status the client sees. Validation errors
// name the field, also as a BadRequest detail; anything unexpected is logged here and reaches
// the client only as INTERNAL, without its detail.
func (s *Server) error(ctx context.Context, err error) error {
	var fe *order.FieldError
	var c conflict
	switch {
	case errors.As(err, &fe):
		st := status.New(codes.InvalidArgument, fe.Error())
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: fe.Field, Description: fe.Msg},
		}}); derr == nil {
			st = d
		}
		return st.Err()
	case asConflict(err, &c):
		return c.status()
	case errors.Is(err, order.ErrNotFound):
		return status.Error(codes.NotFound, "order not found")
	case errors.Is(err, errCreateTimeout), errors.Is(context.Cause(ctx), errCreateTimeout):
		// The server's own bound, not the caller's: the database is too slow to answer now.
		s.log.WarnContext(ctx, "request failed, database too slow", "err", err)
		return status.Error(codes.Unavailable, "temporarily unavailable: retry with the same request_id")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	if failure.IsTransient(err) {
		// The database stayed away longer than the repository retries: the client may try
		// again with the same request_id, which never creates a second order.
		s.log.WarnContext(ctx, "request failed, database unavailable", "err", err)
		return status.Error(codes.Unavailable, "temporarily unavailable: retry with the same request_id")
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.PermissionDenied {
		return err // a refusal made here, already worded for the client
	}
	s.log.ErrorContext(ctx, "request failed", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// conflict is an error of a request_id that already names an order: ALREADY_EXISTS (HTTP 409),
// which no retry of the request mends. Its reason tells the client what does.
type conflict struct {
	err         error
	msg         string // after "request_id: "
	description string // the field violation's: what to do
	reason      string
}

var conflicts = []conflict{
	// The key already names an order, placed with another request: the client needs a new key
	// or the original request.
	{err: order.ErrRequestIDReused, reason: RequestIDReused,
		msg:         "already used by this customer for a different request",
		description: "already used by this customer for a different request: send the same request again, or a new request_id"},
	// The key is taken by another customer's order: sending the original request again does
	// not help, only a new key does.
	{err: order.ErrRequestIDTaken, reason: RequestIDTaken,
		msg:         "already used by another customer",
		description: "already used by another customer: send a new request_id"},
}

// asConflict reports whether err is one of the conflicts, and sets *target to it.
func asConflict(err error, target *conflict) bool {
	for _, c := range conflicts {
		if errors.Is(err, c.err) {
			*target = c
			return true
		}
	}
	return false
}

// status is the conflict as the client sees it, the field named as a BadRequest detail and the
// reason as an ErrorInfo.
func (c conflict) status() error {
	st := status.New(codes.AlreadyExists, "request_id: "+c.msg)
	if d, err := st.WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field:       "request_id",
			Description: c.description,
			Reason:      c.reason,
		}}},
		&errdetails.ErrorInfo{Reason: c.reason, Domain: ErrorDomain, Metadata: map[string]string{"field": "request_id"}},
	); err == nil {
		st = d
	}
	return st.Err()
}
