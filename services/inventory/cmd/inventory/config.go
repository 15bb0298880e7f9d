package main

import (
	"errors"

	"github.com/ordersaga/ordersaga/pkg/config"
)

// Config is inventory-service's configuration.
type Config struct {
	config.Service
	Database config.Database `envPrefix:"INVENTORY_"`
	Security config.Security
	GRPCAddr config.Addr `env:"INVENTORY_GRPC_ADDR" envDefault:":50052"`
	OpsAddr  config.Addr `env:"INVENTORY_OPS_ADDR" envDefault:":9103"`
}

// Validate checks what the variables' types do not.
func (c Config) Validate() error { return errors.Join(c.Service.Validate(), c.Security.Validate()) }

// Runtime is what the service runner reads.
func (c Config) Runtime() config.Runtime {
	return config.Runtime{Service: c.Service, Database: c.Database, OpsAddr: c.OpsAddr, Security: c.Security}
}
