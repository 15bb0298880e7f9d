package grpcapi

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// Who may do what with orders, once token checks are on (package auth verified the token and
// put its caller in the context; without token checks there is no caller and everyone may do
// everything). The token's sub is the customer id: a customer creates orders for itself only
// and reads and lists its own; scope orders:admin reads and lists any order.

// errDenied is what a caller without the right gets: it does not say whether the order exists.
func errDenied(what string) error {
	return status.Error(codes.PermissionDenied, "the token does not allow "+what)
}

// ownCustomer reports whether the caller is customerID (a canonical id).
func ownCustomer(p *auth.Principal, customerID string) bool {
	return strings.EqualFold(p.Subject, customerID)
}

// mayCreate checks that the caller may place an order for customerID.
func mayCreate(ctx context.Context, customerID string) error {
	p, ok := auth.FromContext(ctx)
	if !ok || ownCustomer(p, customerID) {
		return nil
	}
	return errDenied("placing orders for another customer")
}

// mayRead checks that the caller may see o.
func mayRead(ctx context.Context, o *order.Order) error {
	p, ok := auth.FromContext(ctx)
	if !ok || p.HasScope(auth.ScopeOrdersAdmin) || ownCustomer(p, o.CustomerID()) {
		return nil
	}
	return errDenied("reading another customer's order")
}

// listFilter returns the customer a listing is limited to: the one asked for (canonical, or
// "" for all), which a customer without orders:admin may only ask for itself; such a customer
// asking for no one in particular gets its own orders.
func listFilter(ctx context.Context, asked string) (string, error) {
	if asked != "" {
		id, err := order.ParseID("customer_id", asked)
		if err != nil {
			return "", err
		}
		asked = id
	}
	p, ok := auth.FromContext(ctx)
	if !ok || p.HasScope(auth.ScopeOrdersAdmin) {
		return asked, nil
	}
	own, err := order.ParseID("customer_id", p.Subject)
	if err != nil {
		return "", errDenied("listing orders: its subject is not a customer id")
	}
	if asked != "" && asked != own {
		return "", errDenied("listing another customer's orders")
	}
	return own, nil
}
