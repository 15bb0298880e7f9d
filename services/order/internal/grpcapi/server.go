// Package grpcapi serves order.v1.OrderService over gRPC, and over REST through grpc-gateway.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/outgoing"
)

// DefaultCreateTimeout is how long CreateOrder may take unless told otherwise: a failover's
// length, which CreateOrder rides out by retrying (a client with a shorter deadline is answered
// at its deadline), and far shorter than TCP would wait on a database that does not answer.
const DefaultCreateTimeout = 30 * time.Second

// errCreateTimeout ends a CreateOrder call that outlived the server's own bound.
var errCreateTimeout = errors.New("order not stored within the server's bound")

// Page sizes of ListOrders.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// Repository stores orders.
type Repository interface {
	// Create stores a new order with event, its order.created, in one transaction.
	Create(ctx context.Context, o *order.Order, event outbox.Event) (stored *order.Order, created bool, err error)
	Get(ctx context.Context, id string) (*order.Order, error)
	List(ctx context.Context, q order.ListQuery) (orders []*order.Order, nextPageToken string, err error)
}

// Feed tells what changed in an order.
type Feed interface {
	// Subscribe subscribes to the changes of an order. known is the order as the feed last saw
	// it when this process created it recently, or nil: then the order must be read.
	Subscribe(orderID string) (sub Subscription, known *order.Order, unsubscribe func())
	// Created tells the feed about an order this process has just stored.
	Created(o *order.Order)
}

// FeedOf adapts a feed whose subscriptions are of a concrete type.
func FeedOf[S Subscription](f interface {
	Subscribe(string) (S, *order.Order, func())
	Created(*order.Order)
}) Feed {
	return feedOf[S]{f}
}

type feedOf[S Subscription] struct {
	f interface {
		Subscribe(string) (S, *order.Order, func())
		Created(*order.Order)
	}
}

func (a feedOf[S]) Subscribe(id string) (Subscription, *order.Order, func()) {
	return a.f.Subscribe(id)
}

func (a feedOf[S]) Created(o *order.Order) { a.f.Created(o) }

// Subscription receives the changes of one order: Ready is signalled when Take has something,
// and closed when the feed stops; resync means changes may have been missed.
type Subscription interface {
	Ready() <-chan struct{}
	Take() (updates []order.Update, resync bool)
}

// Server implements order.v1.OrderService.
type Server struct {
	orderv1.UnimplementedOrderServiceServer
	repo Repository
	feed Feed
	log  *slog.Logger

	// PollInterval is how often a watched order is re-read even without a signal: a safety net
	// for a lost notification (default 10s; the feed also wakes every watcher after it reconnects).
	PollInterval time.Duration
	// CreateTimeout bounds a CreateOrder call whatever its caller's deadline (default
	// DefaultCreateTimeout): past it the call answers UNAVAILABLE, to be retried with the same
	// request_id, instead of queueing behind a database that does not answer.
	CreateTimeout time.Duration
}

// NewServer returns the service on repo; feed drives WatchOrder.
func NewServer(repo Repository, feed Feed, log *slog.Logger) *Server {
	return &Server{repo: repo, feed: feed, log: log, PollInterval: 10 * time.Second, CreateTimeout: DefaultCreateTimeout}
}

// CreateOrder validates and stores an order, which starts its saga. A repeated request_id
// returns the order that key created. It answers within the caller's deadline and within
// CreateTimeout.
func (s *Server) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderResponse, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, s.CreateTimeout, errCreateTimeout)
	defer cancel()
	p, err := params(req)
	if err != nil {
		return nil, s.error(ctx, err)
	}
	o, err := order.New(p, time.Now())
	if err != nil {
		return nil, s.error(ctx, err)
	}
	if err := mayCreate(ctx, o.CustomerID()); err != nil {
		return nil, err
	}
	stored, created, err := s.repo.Create(ctx, o, outgoing.Created(o))
	if err != nil {
		return nil, s.error(ctx, err)
	}
	if created {
		s.feed.Created(stored)
		s.log.DebugContext(ctx, "order created", "order_id", stored.ID(), "request_id", stored.RequestID(),
			"total", stored.Total().String())
	} else {
		s.log.DebugContext(ctx, "order request repeated", "order_id", stored.ID(), "request_id", stored.RequestID())
	}
	return &orderv1.CreateOrderResponse{Order: toProto(stored)}, nil
}

func params(req *orderv1.CreateOrderRequest) (order.Params, error) {
	p := order.Params{
		CustomerID:    req.GetCustomerId(),
		PaymentMethod: req.GetPaymentMethod(),
		RequestID:     req.GetRequestId(),
	}
	if len(req.GetItems()) > order.MaxItems {
		// Checked before the prices are parsed, so that a huge request costs little.
		return p, &order.FieldError{Field: "items", Msg: fmt.Sprintf("must hold at most %d items", order.MaxItems)}
	}
	for i, it := range req.GetItems() {
		price, err := order.ParseMoney(fmt.Sprintf("items[%d].unit_price", i), it.GetUnitPrice())
		if err != nil {
			return p, err
		}
		p.Items = append(p.Items, order.Item{ProductID: it.GetProductId(), Quantity: it.GetQuantity(), UnitPrice: price})
	}
	if a := req.GetShippingAddress(); a != nil {
		p.ShippingAddress = &order.Address{
			Recipient:   a.GetRecipient(),
			Line1:       a.GetLine1(),
			Line2:       a.GetLine2(),
			City:        a.GetCity(),
			PostalCode:  a.GetPostalCode(),
			CountryCode: a.GetCountryCode(),
		}
	}
	return p, nil
}

// GetOrder returns an order with its history.
func (s *Server) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	o, err := s.get(ctx, req.GetOrderId())
	if err != nil {
		return nil, s.error(ctx, err)
	}
	if err := mayRead(ctx, o); err != nil {
		return nil, err
	}
	return &orderv1.GetOrderResponse{Order: toProto(o)}, nil
}

func (s *Server) get(ctx context.Context, id string) (*order.Order, error) {
	id, err := order.ParseID("order_id", id)
	if err != nil {
		return nil, err
	}
	return s.repo.Get(ctx, id)
}

// ListOrders pages through orders, newest first.
func (s *Server) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersResponse, error) {
	customer, err := listFilter(ctx, req.GetCustomerId())
	if err != nil {
		return nil, s.error(ctx, err)
	}
	if len(req.GetPageToken()) > order.MaxPageTokenLen {
		return nil, s.error(ctx, &order.FieldError{Field: "page_token", Msg: "is not a token this service issued"})
	}
	q := order.ListQuery{CustomerID: customer, PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()}
	switch {
	case q.PageSize < 0:
		return nil, s.error(ctx, &order.FieldError{Field: "page_size", Msg: "must not be negative"})
	case q.PageSize == 0:
		q.PageSize = DefaultPageSize
	case q.PageSize > MaxPageSize:
		q.PageSize = MaxPageSize
	}
	if req.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		st, ok := fromProtoStatus(req.GetStatus())
		if !ok {
			return nil, s.error(ctx, &order.FieldError{Field: "status", Msg: "is not an order status"})
		}
		q.Status = st
	}
	orders, next, err := s.repo.List(ctx, q)
	if err != nil {
		return nil, s.error(ctx, err)
	}
	resp := &orderv1.ListOrdersResponse{Orders: make([]*orderv1.Order, len(orders)), NextPageToken: next}
	for i, o := range orders {
		resp.Orders[i] = toProto(o)
	}
	return resp, nil
}

// WatchOrder sends the order now and again after every status change, and ends once the order
// is terminal. Changes made by any replica arrive through the feed and are applied to the order
// as sent, without reading it again; a gap in the changes, a feed reconnect or a periodic poll
// (a safety net for a lost notification) makes it read the order again.
func (s *Server) WatchOrder(req *orderv1.WatchOrderRequest, stream orderv1.OrderService_WatchOrderServer) error {
	ctx := stream.Context()
	id, err := order.ParseID("order_id", req.GetOrderId())
	if err != nil {
		return s.error(ctx, err)
	}
	// Subscribed before the first read, so that no change falls between the two; by the id in
	// the canonical form that the feed carries.
	sub, o, unsubscribe := s.feed.Subscribe(id)
	defer unsubscribe()
	if o == nil {
		var err error
		if o, err = s.repo.Get(ctx, id); err != nil {
			return s.error(ctx, err)
		}
	}
	if err := mayRead(ctx, o); err != nil {
		return err
	}
	pb, version := toProto(o), o.Version()
	if err := stream.Send(&orderv1.WatchOrderResponse{Order: pb}); err != nil {
		return err
	}
	poll := time.NewTicker(s.PollInterval)
	defer poll.Stop()
	for !terminal(pb.GetStatus()) {
		resync := false
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case _, ok := <-sub.Ready():
			if !ok {
				return status.Error(codes.Unavailable, "server is shutting down")
			}
		case <-poll.C:
			resync = true
		}
		updates, missed := sub.Take()
		resync = resync || missed
		slices.SortFunc(updates, func(a, b order.Update) int { return a.Version - b.Version })
		for _, u := range updates {
			if resync || u.Version <= version {
				continue // known already, or about to be read
			}
			if u.Version != version+1 {
				resync = true // a change in between has not arrived yet
				continue
			}
			applyUpdate(pb, u)
			version = u.Version
			if err := stream.Send(&orderv1.WatchOrderResponse{Order: pb}); err != nil {
				return err
			}
		}
		if !resync {
			continue
		}
		fresh, err := s.repo.Get(ctx, id)
		if err != nil {
			return s.error(ctx, err)
		}
		if fresh.Version() <= version {
			continue
		}
		pb, version = toProto(fresh), fresh.Version()
		if err := stream.Send(&orderv1.WatchOrderResponse{Order: pb}); err != nil {
			return err
		}
	}
	return nil
}

// applyUpdate moves the order as sent to a client by one status change.
func applyUpdate(pb *orderv1.Order, u order.Update) {
	pb.Status = toProtoStatus(u.Change.Status)
	pb.FailureReason = u.FailureReason
	pb.TrackingCode = u.TrackingCode
	pb.UpdateTime = timestamppb.New(u.Change.At)
	pb.History = append(pb.History, &orderv1.StatusChange{Status: pb.Status, Reason: u.Change.Reason, ChangeTime: pb.UpdateTime})
}

func terminal(s orderv1.OrderStatus) bool {
	st, ok := fromProtoStatus(s)
	return ok && st.Terminal()
}

func toProto(o *order.Order) *orderv1.Order {
	items := make([]*orderv1.LineItem, len(o.Items()))
	for i, it := range o.Items() {
		items[i] = &orderv1.LineItem{ProductId: it.ProductID, Quantity: it.Quantity, UnitPrice: it.UnitPrice.String()}
	}
	history := make([]*orderv1.StatusChange, len(o.History()))
	for i, h := range o.History() {
		history[i] = &orderv1.StatusChange{Status: toProtoStatus(h.Status), Reason: h.Reason, ChangeTime: timestamppb.New(h.At)}
	}
	pb := &orderv1.Order{
		OrderId:       o.ID(),
		CustomerId:    o.CustomerID(),
		PaymentMethod: o.PaymentMethod(),
		Status:        toProtoStatus(o.Status()),
		Items:         items,
		Total:         o.Total().String(),
		FailureReason: o.FailureReason(),
		TrackingCode:  o.TrackingCode(),
		RequestId:     o.RequestID(),
		CreateTime:    timestamppb.New(o.CreatedAt()),
		UpdateTime:    timestamppb.New(o.UpdatedAt()),
		History:       history,
	}
	if a := o.ShippingAddress(); a != nil {
		pb.ShippingAddress = &orderv1.ShippingAddress{
			Recipient:   a.Recipient,
			Line1:       a.Line1,
			Line2:       a.Line2,
			City:        a.City,
			PostalCode:  a.PostalCode,
			CountryCode: a.CountryCode,
		}
	}
	return pb
}

const statusPrefix = "ORDER_STATUS_"

func toProtoStatus(s order.Status) orderv1.OrderStatus {
	return orderv1.OrderStatus(orderv1.OrderStatus_value[statusPrefix+string(s)])
}

func fromProtoStatus(s orderv1.OrderStatus) (order.Status, bool) {
	name, ok := orderv1.OrderStatus_name[int32(s)]
	if !ok || s == orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		return "", false
	}
	st := order.Status(name[len(statusPrefix):])
	return st, st.Valid()
}
