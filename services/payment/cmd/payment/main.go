// Command payment runs payment-service: it charges each new order through the simulated gateway
// and reverses the payment when the saga compensates.
package main

import (
	"context"
	"math/rand/v2"

	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/service"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/payment/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
	"github.com/ordersaga/ordersaga/services/payment/internal/postgres"
)

func main() {
	service.Main(catalog.Payment, postgres.Migrations, func(_ context.Context, s *service.Service, cfg Config) error {
		gateway, err := payment.NewGateway(cfg.AmountLimit.Minor(), float64(cfg.DeclineRate), rand.Float64)
		if err != nil {
			return err
		}
		reg := rules.New[eventhandler.Store](s.Name)
		eventhandler.Register(reg, gateway, s.Log)
		return s.Consume(unitofwork.New(reg, s.Pool, s.Relay, s.Log, postgres.NewStore))
	})
}
