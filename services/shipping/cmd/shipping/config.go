package main

import "github.com/ordersaga/ordersaga/pkg/config"

// Config is shipping-service's configuration.
type Config struct {
	config.Service
	Database    config.Database `envPrefix:"SHIPPING_"`
	OpsAddr     config.Addr     `env:"SHIPPING_OPS_ADDR" envDefault:":9104"`
	BaseFreight config.Amount   `env:"SHIPPING_BASE_FREIGHT" envDefault:"10.00"`
	FailureRate config.Rate     `env:"SHIPPING_FAILURE_RATE" envDefault:"0"`
}

// Runtime is what the service runner reads.
func (c Config) Runtime() config.Runtime {
	return config.Runtime{Service: c.Service, Database: c.Database, OpsAddr: c.OpsAddr}
}
