// Command inventory runs inventory-service: it reserves the stock of paid orders, releases it
// when shipping fails, and serves the admin gRPC API that sets stock.
package main

import (
	"context"

	"google.golang.org/grpc"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/service"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/grpcapi"
	"github.com/ordersaga/ordersaga/services/inventory/internal/postgres"
)

func main() {
	service.Main(catalog.Inventory, postgres.Migrations, func(_ context.Context, s *service.Service, cfg Config) error {
		reg := rules.New[eventhandler.Store](s.Name)
		eventhandler.Register(reg, s.Log)
		if err := s.Consume(unitofwork.New(reg, s.Pool, s.Relay, s.Log, postgres.NewStore)); err != nil {
			return err
		}
		admin := grpcapi.New(postgres.NewRepository(s.Pool), s.Log)
		return s.ServeGRPC(cfg.GRPCAddr, auth.ScopeInventoryAdmin, func(srv *grpc.Server) {
			inventoryv1.RegisterInventoryServiceServer(srv, admin)
		}, grpc.MaxRecvMsgSize(grpcapi.MaxRequestBytes))
	})
}
