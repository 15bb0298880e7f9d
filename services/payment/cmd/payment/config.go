package main

import "github.com/ordersaga/ordersaga/pkg/config"

// Config is payment-service's configuration.
type Config struct {
	config.Service
	Database    config.Database `envPrefix:"PAYMENT_"`
	OpsAddr     config.Addr     `env:"PAYMENT_OPS_ADDR" envDefault:":9102"`
	AmountLimit config.Amount   `env:"PAYMENT_AMOUNT_LIMIT" envDefault:"10000.00"`
	DeclineRate config.Rate     `env:"PAYMENT_DECLINE_RATE" envDefault:"0"`
}

// Runtime is what the service runner reads.
func (c Config) Runtime() config.Runtime {
	return config.Runtime{Service: c.Service, Database: c.Database, OpsAddr: c.OpsAddr}
}
