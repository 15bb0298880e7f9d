// Package config is every binary's configuration: one struct per binary, read once from the
// environment, with the defaults in the struct tags and nowhere else. The services and ordersctl
// parse the same structs, Vars lists what each binary reads (for the README and the deployment
// manifests), and each struct logs itself with its secrets masked.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/pkg/money"
)

// Log is how much a service logs.
type Log struct {
	Level slog.Level `env:"LOG_LEVEL" envDefault:"info"`
}

// Broker is where RabbitMQ is.
type Broker struct {
	// AMQPURL is one amqp:// URL, or several separated by commas (a cluster's nodes).
	AMQPURL string `env:"AMQP_URL" envDefault:"amqp://guest:guest@localhost:5672/"`
}

// Validate checks that every address of the list is an AMQP URL.
func (b Broker) Validate() error {
	for u := range strings.SplitSeq(b.AMQPURL, ",") {
		if _, err := amqp.ParseURI(strings.TrimSpace(u)); err != nil {
			return fmt.Errorf("AMQP_URL: %s", maskURL(err.Error()))
		}
	}
	return nil
}

// OrderDatabase is order-service's PostgreSQL.
type OrderDatabase struct {
	URL string `env:"ORDER_DATABASE_URL" envDefault:"postgres://postgres@localhost:5432/orderdb?sslmode=disable"`
}

// PaymentDatabase is payment-service's PostgreSQL.
type PaymentDatabase struct {
	URL string `env:"PAYMENT_DATABASE_URL" envDefault:"postgres://postgres@localhost:5432/paymentdb?sslmode=disable"`
}

// InventoryDatabase is inventory-service's PostgreSQL.
type InventoryDatabase struct {
	URL string `env:"INVENTORY_DATABASE_URL" envDefault:"postgres://postgres@localhost:5432/inventorydb?sslmode=disable"`
}

// ShippingDatabase is shipping-service's PostgreSQL.
type ShippingDatabase struct {
	URL string `env:"SHIPPING_DATABASE_URL" envDefault:"postgres://postgres@localhost:5432/shippingdb?sslmode=disable"`
}

func (d OrderDatabase) Validate() error     { return validateDatabase("ORDER_DATABASE_URL", d.URL) }
func (d PaymentDatabase) Validate() error   { return validateDatabase("PAYMENT_DATABASE_URL", d.URL) }
func (d InventoryDatabase) Validate() error { return validateDatabase("INVENTORY_DATABASE_URL", d.URL) }
func (d ShippingDatabase) Validate() error  { return validateDatabase("SHIPPING_DATABASE_URL", d.URL) }

// validateDatabase checks that url is a libpq URL or keyword/value string, as pgx reads it.
func validateDatabase(name, url string) error {
	if _, err := pgconn.ParseConfig(url); err != nil {
		return fmt.Errorf("%s: %s", name, maskURL(err.Error()))
	}
	return nil
}

// Order is order-service's configuration.
type Order struct {
	Log      Log
	Broker   Broker
	Database OrderDatabase
	GRPCAddr Addr `env:"ORDER_GRPC_ADDR" envDefault:":50051"`
	HTTPAddr Addr `env:"ORDER_HTTP_ADDR" envDefault:":3001"`
	OpsAddr  Addr `env:"ORDER_OPS_ADDR" envDefault:":9101"`
	Saga     Saga
}

// Saga is how long the saga of one order may take.
type Saga struct {
	// Timeout is the saga deadline: an order not terminal this long after its creation is
	// cancelled and compensated by order-service.
	Timeout time.Duration `env:"ORDER_SAGA_TIMEOUT" envDefault:"10m"`
}

// Validate checks that the deadline is positive.
func (s Saga) Validate() error {
	if s.Timeout <= 0 {
		return fmt.Errorf("ORDER_SAGA_TIMEOUT: %s is not a positive duration", s.Timeout)
	}
	return nil
}

// Payment is payment-service's configuration.
type Payment struct {
	Log         Log
	Broker      Broker
	Database    PaymentDatabase
	OpsAddr     Addr   `env:"PAYMENT_OPS_ADDR" envDefault:":9102"`
	AmountLimit Amount `env:"PAYMENT_AMOUNT_LIMIT" envDefault:"10000.00"`
	DeclineRate Rate   `env:"PAYMENT_DECLINE_RATE" envDefault:"0"`
}

// Inventory is inventory-service's configuration.
type Inventory struct {
	Log      Log
	Broker   Broker
	Database InventoryDatabase
	GRPCAddr Addr `env:"INVENTORY_GRPC_ADDR" envDefault:":50052"`
	OpsAddr  Addr `env:"INVENTORY_OPS_ADDR" envDefault:":9103"`
}

// Shipping is shipping-service's configuration.
type Shipping struct {
	Log         Log
	Broker      Broker
	Database    ShippingDatabase
	OpsAddr     Addr   `env:"SHIPPING_OPS_ADDR" envDefault:":9104"`
	BaseFreight Amount `env:"SHIPPING_BASE_FREIGHT" envDefault:"10.00"`
	FailureRate Rate   `env:"SHIPPING_FAILURE_RATE" envDefault:"0"`
}

// Ordersctl is where the operator tool finds the broker and the four databases: the same
// variables, and so the same defaults, as the services.
type Ordersctl struct {
	Broker    Broker
	Order     OrderDatabase
	Payment   PaymentDatabase
	Inventory InventoryDatabase
	Shipping  ShippingDatabase
}

func (c Order) LogValue() slog.Value     { return logValue(&c) }
func (c Payment) LogValue() slog.Value   { return logValue(&c) }
func (c Inventory) LogValue() slog.Value { return logValue(&c) }
func (c Shipping) LogValue() slog.Value  { return logValue(&c) }
func (c Ordersctl) LogValue() slog.Value { return logValue(&c) }

// Addr is a listen address, host:port (":50051").
type Addr string

// UnmarshalText accepts what net.Listen("tcp", …) accepts as host:port.
func (a *Addr) UnmarshalText(text []byte) error {
	if _, _, err := net.SplitHostPort(string(text)); err != nil {
		return fmt.Errorf("not a host:port listen address: %w", err)
	}
	*a = Addr(text)
	return nil
}

// String returns the address.
func (a Addr) String() string { return string(a) }

// Amount is an exact amount of money in minor units, written in major units ("10000.00").
type Amount int64

// UnmarshalText parses a decimal amount with money.Parse.
func (a *Amount) UnmarshalText(text []byte) error {
	m, err := money.Parse(string(text))
	if err != nil {
		return fmt.Errorf("amount %q %w", text, err)
	}
	*a = Amount(m)
	return nil
}

// Minor returns the amount in minor units (cents).
func (a Amount) Minor() int64 { return int64(a) }

// String formats the amount in major units.
func (a Amount) String() string { return money.Format(int64(a)) }

// Rate is a probability between 0 and 1.
type Rate float64

// UnmarshalText parses a number in [0, 1].
func (r *Rate) UnmarshalText(text []byte) error {
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil || f < 0 || f > 1 {
		return fmt.Errorf("%q is not a number between 0 and 1", text)
	}
	*r = Rate(f)
	return nil
}

// String formats the rate.
func (r Rate) String() string { return strconv.FormatFloat(float64(r), 'g', -1, 64) }

// Load reads a binary's configuration T (Order, Payment, …) from getenv (os.Getenv in a main)
// and validates it. An empty variable counts as unset: its default applies.
func Load[T any](getenv func(string) string) (T, error) {
	var cfg T
	fields, err := env.GetFieldParams(&cfg)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	environment := make(map[string]string, len(fields))
	for _, f := range fields {
		if v := getenv(f.Key); v != "" {
			environment[f.Key] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environment}); err != nil {
		return cfg, fmt.Errorf("config: %w", byVariable(&cfg, err))
	}
	if err := validate(&cfg); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// validator is a part of a configuration that checks more than its fields' types.
type validator interface{ Validate() error }

// validate runs Validate on every part of cfg that has it.
func validate(cfg any) error {
	var errs []error
	walk(cfg, func(f field) {
		if v, ok := f.value.Interface().(validator); ok && f.env == "" {
			errs = append(errs, v.Validate())
		}
	})
	return errors.Join(errs...)
}

// byVariable restates env's parse errors, which name Go fields, by the variable that was wrong.
func byVariable(cfg any, err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return errors.New(maskURL(err.Error()))
	}
	keys := map[string][]string{} // Go field name → variables of fields so named
	walk(cfg, func(f field) {
		if f.env != "" {
			keys[f.name] = append(keys[f.name], f.env)
		}
	})
	errs := make([]error, len(agg.Errors))
	for i, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) && len(keys[pe.Name]) > 0 {
			errs[i] = fmt.Errorf("%s: %s", strings.Join(keys[pe.Name], " or "), maskURL(pe.Err.Error()))
			continue
		}
		errs[i] = errors.New(maskURL(e.Error()))
	}
	return errors.Join(errs...)
}
