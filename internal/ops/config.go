// Package ops holds the operator's tools for a running saga: dead letters (list, inspect,
// replay) and an audit of the invariants that hold across the four services' databases.
package ops

import (
	"flag"
	"time"

	"github.com/ordersaga/ordersaga/pkg/config"
)

// Env is what ordersctl reads from the environment: the broker and the four databases under the
// services' own variables (and so with their defaults), and the gRPC APIs of order and
// inventory.
type Env struct {
	Broker    config.Broker
	Order     config.Database `envPrefix:"ORDER_"`
	Payment   config.Database `envPrefix:"PAYMENT_"`
	Inventory config.Database `envPrefix:"INVENTORY_"`
	Shipping  config.Database `envPrefix:"SHIPPING_"`

	OrderAddr     string `env:"ORDERSCTL_ORDER_ADDR" envDefault:"localhost:50051"`
	InventoryAddr string `env:"ORDERSCTL_INVENTORY_ADDR" envDefault:"localhost:50052"`
	TLS           bool   `env:"ORDERSCTL_TLS"`         // dial with TLS, trusting the system's roots or TLSCAFile
	TLSCAFile     string `env:"ORDERSCTL_TLS_CA_FILE"` // PEM certificates to trust; implies TLS
	Token         string `env:"ORDERSCTL_TOKEN"`       // a secret: config masks *_TOKEN
}

// Validate checks the broker's URLs (the databases' are checked as they are read).
func (e Env) Validate() error { return e.Broker.Validate() }

// Config is where ordersctl finds the broker, the databases and the gRPC APIs, and how long it
// may take.
type Config struct {
	Env
	Timeout time.Duration
}

// ConfigFromEnv reads the variables the services read, with the same defaults.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	e, err := config.Load[Env](getenv)
	return Config{Env: e, Timeout: time.Minute}, err
}

// register adds the global flags to fs, defaulting to c's current values, so that they are
// accepted both before and after the command name.
func (c *Config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Broker.AMQPURL, "amqp-url", c.Broker.AMQPURL, "RabbitMQ URL (env AMQP_URL)")
	fs.StringVar((*string)(&c.Order.URL), "order-db", c.Order.URL.String(), "order database URL (env ORDER_DATABASE_URL)")
	fs.StringVar((*string)(&c.Payment.URL), "payment-db", c.Payment.URL.String(), "payment database URL (env PAYMENT_DATABASE_URL)")
	fs.StringVar((*string)(&c.Inventory.URL), "inventory-db", c.Inventory.URL.String(), "inventory database URL (env INVENTORY_DATABASE_URL)")
	fs.StringVar((*string)(&c.Shipping.URL), "shipping-db", c.Shipping.URL.String(), "shipping database URL (env SHIPPING_DATABASE_URL)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "give up after this long, connecting included")
	fs.StringVar(&c.OrderAddr, "order-addr", c.OrderAddr, "order-service gRPC host:port (env ORDERSCTL_ORDER_ADDR)")
	fs.StringVar(&c.InventoryAddr, "inventory-addr", c.InventoryAddr, "inventory-service gRPC host:port (env ORDERSCTL_INVENTORY_ADDR)")
	fs.BoolVar(&c.TLS, "tls", c.TLS, "dial the gRPC APIs with TLS (env ORDERSCTL_TLS)")
	fs.StringVar(&c.TLSCAFile, "tls-ca", c.TLSCAFile, "PEM file of the CA to trust; implies -tls (env ORDERSCTL_TLS_CA_FILE)")
	fs.StringVar(&c.Token, "token", c.Token, "bearer token for the gRPC APIs (env ORDERSCTL_TOKEN)")
}
