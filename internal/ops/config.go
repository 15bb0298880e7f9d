// Package ops holds the operator's tools for a running saga: dead-letter queues (list, inspect,
// replay) and an audit of the invariants that hold across the four services' databases.
package ops

import (
	"flag"
	"time"
)

// Config is where ordersctl finds the broker and the databases.
type Config struct {
	AMQPURL     string
	OrderDB     string
	PaymentDB   string
	InventoryDB string
	ShippingDB  string
	Timeout     time.Duration

	// The services' gRPC APIs, for order get and stock get/set.
	OrderAddr     string
	InventoryAddr string
	TLS           bool   // dial with TLS, trusting the system's roots or TLSCAFile
	TLSCAFile     string // PEM certificates to trust; implies TLS
	Token         string // bearer token sent with every call
}

func dbURL(name string) string {
	return "postgres://postgres@localhost:5432/" + name + "?sslmode=disable"
}

// ConfigFromEnv reads the same variables the services read, with the same defaults.
func ConfigFromEnv(getenv func(string) string) Config {
	get := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	return Config{
		AMQPURL:     get("AMQP_URL", "amqp://guest:guest@localhost:5672/"),
		OrderDB:     get("ORDER_DATABASE_URL", dbURL("orderdb")),
		PaymentDB:   get("PAYMENT_DATABASE_URL", dbURL("paymentdb")),
		InventoryDB: get("INVENTORY_DATABASE_URL", dbURL("inventorydb")),
		ShippingDB:  get("SHIPPING_DATABASE_URL", dbURL("shippingdb")),
		Timeout:     time.Minute,

		OrderAddr:     get("ORDERSCTL_ORDER_ADDR", "localhost:50051"),
		InventoryAddr: get("ORDERSCTL_INVENTORY_ADDR", "localhost:50052"),
		TLS:           getenv("ORDERSCTL_TLS") == "true",
		TLSCAFile:     getenv("ORDERSCTL_TLS_CA_FILE"),
		Token:         getenv("ORDERSCTL_TOKEN"),
	}
}

// register adds the global flags to fs, defaulting to c's current values, so that they are
// accepted both before and after the command name.
func (c *Config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.AMQPURL, "amqp-url", c.AMQPURL, "RabbitMQ URL (env AMQP_URL)")
	fs.StringVar(&c.OrderDB, "order-db", c.OrderDB, "order database URL (env ORDER_DATABASE_URL)")
	fs.StringVar(&c.PaymentDB, "payment-db", c.PaymentDB, "payment database URL (env PAYMENT_DATABASE_URL)")
	fs.StringVar(&c.InventoryDB, "inventory-db", c.InventoryDB, "inventory database URL (env INVENTORY_DATABASE_URL)")
	fs.StringVar(&c.ShippingDB, "shipping-db", c.ShippingDB, "shipping database URL (env SHIPPING_DATABASE_URL)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "give up after this long, connecting included")
	fs.StringVar(&c.OrderAddr, "order-addr", c.OrderAddr, "order-service gRPC host:port (env ORDERSCTL_ORDER_ADDR)")
	fs.StringVar(&c.InventoryAddr, "inventory-addr", c.InventoryAddr, "inventory-service gRPC host:port (env ORDERSCTL_INVENTORY_ADDR)")
	fs.BoolVar(&c.TLS, "tls", c.TLS, "dial the gRPC APIs with TLS (env ORDERSCTL_TLS=true)")
	fs.StringVar(&c.TLSCAFile, "tls-ca", c.TLSCAFile, "PEM file of the CA to trust; implies -tls (env ORDERSCTL_TLS_CA_FILE)")
	fs.StringVar(&c.Token, "token", c.Token, "bearer token for the gRPC APIs (env ORDERSCTL_TOKEN)")
}
