// Command order runs order-service: the OrderService API (gRPC and REST) and the saga's order side.
package main

import (
	"context"

	"google.golang.org/grpc"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/service"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/order/internal/deadline"
	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/grpcapi"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
)

func main() {
	service.Main(catalog.Order, postgres.Migrations, func(ctx context.Context, s *service.Service, cfg Config) error {
		repo := postgres.NewRepository(s.Pool)
		repo.AfterOutboxCommit(s.Relay.Publish)
		feed := postgres.NewStatusFeed(s.Pool, s.Log)
		repo.AfterStatusCommit(feed.Announce)
		s.Go(feed.Run)
		reg := rules.New[eventhandler.Store](s.Name)
		eventhandler.Register(reg, s.Log)
		if err := s.Consume(unitofwork.New(reg, s.Pool, s.Relay, s.Log, repo.Store)); err != nil {
			return err
		}
		sweeper, err := deadline.New(repo, cfg.SagaTimeout, s.Log, s.Metrics)
		if err != nil {
			return err
		}
		s.Go(sweeper.Run)
		api := grpcapi.NewServer(repo, grpcapi.FeedOf(feed), s.Log) // checks each customer's rights per order
		api.CreateTimeout = cfg.CreateTimeout
		if err := s.ServeGRPC(cfg.GRPCAddr, "", func(srv *grpc.Server) { orderv1.RegisterOrderServiceServer(srv, api) }); err != nil {
			return err
		}
		gateway, err := grpcapi.Gateway(s.Detached(), cfg.GRPCAddr.String(), grpcapi.GatewayOptions{Creds: s.SelfCredentials(), AllowedOrigins: cfg.AllowedOrigins})
		if err != nil {
			return err
		}
		s.ServeHTTP("rest", cfg.HTTPAddr, gateway)
		return nil
	})
}
