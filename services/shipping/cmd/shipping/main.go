// Command shipping runs shipping-service: it schedules the shipment of each order whose stock
// is reserved, or reports that the carrier refused it.
package main

import (
	"context"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/service"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/postgres"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

func main() {
	service.Main(catalog.Shipping, postgres.Migrations, func(_ context.Context, s *service.Service, cfg Config) error {
		carrier, err := shipping.NewCarrier(cfg.BaseFreight.Minor(), float64(cfg.FailureRate), shipping.Env{})
		if err != nil {
			return err
		}
		reg := rules.New[eventhandler.Store](s.Name)
		eventhandler.Register(reg, carrier, s.Log)
		return s.Consume(unitofwork.New(reg, s.Pool, s.Relay, s.Log, postgres.NewStore))
	})
}
