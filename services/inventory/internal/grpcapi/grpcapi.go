// Package grpcapi serves inventory.v1.InventoryService, the admin API of inventory-service.
package grpcapi

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

// Store reads and sets stock.
type Store interface {
	Product(ctx context.Context, id string) (*inventory.Product, error)
	SetStock(ctx context.Context, id string, total int64) (*inventory.Product, error)
}

// Server implements inventoryv1.InventoryServiceServer.
type Server struct {
	inventoryv1.UnimplementedInventoryServiceServer
	store Store
	log   *slog.Logger
}

// New returns the service on store.
func New(store Store, log *slog.Logger) *Server {
	return &Server{store: store, log: log}
}

// MaxRequestBytes bounds a request message; a larger one is refused (RESOURCE_EXHAUSTED)
// before it is read whole. The API's requests are a product id and a number.
const MaxRequestBytes = 16 << 10

// SetStock sets a product's total stock, creating the product when missing.
func (s *Server) SetStock(ctx context.Context, req *inventoryv1.SetStockRequest) (*inventoryv1.SetStockResponse, error) {
	id, err := inventory.ParseProductID(req.GetProductId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if req.GetQuantity() < 0 {
		return nil, s.toStatus(ctx, inventory.ErrInvalidQuantity)
	}
	p, err := s.store.SetStock(ctx, id, req.GetQuantity())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	s.log.InfoContext(ctx, "stock set", "product_id", p.ID(), "total", p.Total(), "reserved", p.Reserved())
	return &inventoryv1.SetStockResponse{Stock: toStock(p)}, nil
}

// GetStock returns a product's total, reserved and available stock.
func (s *Server) GetStock(ctx context.Context, req *inventoryv1.GetStockRequest) (*inventoryv1.GetStockResponse, error) {
	id, err := inventory.ParseProductID(req.GetProductId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	p, err := s.store.Product(ctx, id)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &inventoryv1.GetStockResponse{Stock: toStock(p)}, nil
}

func toStock(p *inventory.Product) *inventoryv1.Stock {
	return &inventoryv1.Stock{ProductId: p.ID(), Total: p.Total(), Reserved: p.Reserved(), Available: p.Available()}
}

// toStatus maps an error to its gRPC status. Unexpected errors are logged and reported without
// their detail.
func (s *Server) toStatus(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, inventory.ErrInvalidProductID):
		return status.Error(codes.InvalidArgument, "product_id: must be a UUID")
	case errors.Is(err, inventory.ErrInvalidQuantity):
		return status.Error(codes.InvalidArgument, "quantity: must not be negative")
	case errors.Is(err, inventory.ErrUnknownProduct):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, inventory.ErrBelowReserved):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.log.ErrorContext(ctx, "inventory request failed", "err", err)
	return status.Error(codes.Internal, "internal error")
}
