// Package ops holds the operator's tools for a running saga: dead letters (list, inspect,
// replay) and an audit of the invariants that hold across the four services' databases.
package ops

import (
	"flag"
	"time"

	"github.com/ordersaga/ordersaga/pkg/config"
)

// Config is where ordersctl finds the broker, the databases and the gRPC APIs, and how long it
// may take.
type Config struct {
	config.Ordersctl
	Timeout time.Duration
}

// ConfigFromEnv reads the variables the services read, with the same defaults (config.Ordersctl).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c, err := config.Load[config.Ordersctl](getenv)
	return Config{Ordersctl: c, Timeout: time.Minute}, err
}

// register adds the global flags to fs, defaulting to c's current values, so that they are
// accepted both before and after the command name.
func (c *Config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Broker.AMQPURL, "amqp-url", c.Broker.AMQPURL, "RabbitMQ URL (env AMQP_URL)")
	fs.StringVar(&c.Order.URL, "order-db", c.Order.URL, "order database URL (env ORDER_DATABASE_URL)")
	fs.StringVar(&c.Payment.URL, "payment-db", c.Payment.URL, "payment database URL (env PAYMENT_DATABASE_URL)")
	fs.StringVar(&c.Inventory.URL, "inventory-db", c.Inventory.URL, "inventory database URL (env INVENTORY_DATABASE_URL)")
	fs.StringVar(&c.Shipping.URL, "shipping-db", c.Shipping.URL, "shipping database URL (env SHIPPING_DATABASE_URL)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "give up after this long, connecting included")
	fs.StringVar(&c.OrderAddr, "order-addr", c.OrderAddr, "order-service gRPC host:port (env ORDERSCTL_ORDER_ADDR)")
	fs.StringVar(&c.InventoryAddr, "inventory-addr", c.InventoryAddr, "inventory-service gRPC host:port (env ORDERSCTL_INVENTORY_ADDR)")
	fs.BoolVar(&c.TLS, "tls", c.TLS, "dial the gRPC APIs with TLS (env ORDERSCTL_TLS)")
	fs.StringVar(&c.TLSCAFile, "tls-ca", c.TLSCAFile, "PEM file of the CA to trust; implies -tls (env ORDERSCTL_TLS_CA_FILE)")
	fs.StringVar(&c.Token, "token", c.Token, "bearer token for the gRPC APIs (env ORDERSCTL_TOKEN)")
}
