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
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/pkg/money"
)

// Log is how much a service logs, and how.
type Log struct {
	Level slog.Level `env:"LOG_LEVEL" envDefault:"info"`
	// Format is json, text or auto: text when stdout is a terminal (a person reads it), JSON
	// elsewhere (a collector reads it).
	Format LogFormat `env:"LOG_FORMAT" envDefault:"auto"`
}

// LogFormat is how log lines are written: LogJSON, LogText or LogAuto.
type LogFormat string

// The values of LOG_FORMAT.
const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
	LogAuto LogFormat = "auto"
)

// UnmarshalText accepts json, text and auto.
func (f *LogFormat) UnmarshalText(text []byte) error {
	switch v := LogFormat(strings.ToLower(string(text))); v {
	case LogJSON, LogText, LogAuto:
		*f = v
		return nil
	}
	return fmt.Errorf("%q is not json, text or auto", text)
}

// Broker is where RabbitMQ is.
type Broker struct {
	// AMQPURL is one amqp:// URL, or several separated by commas (a cluster's nodes). With
	// PasswordFile set, Load puts that file's password into every URL of the list.
	AMQPURL string `env:"AMQP_URL" envDefault:"amqp://guest:guest@localhost:5672/"`
	// PasswordFile names a file (a mounted secret) holding the broker password, so that it is
	// never in the environment.
	PasswordFile string `env:"AMQP_PASSWORD_FILE"`
}

func (b *Broker) resolve() (err error) {
	b.AMQPURL, err = withPasswordFile("AMQP_PASSWORD_FILE", b.AMQPURL, b.PasswordFile)
	return err
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

// OrderDatabase is order-service's PostgreSQL. With PasswordFile set, Load puts that file's
// password into URL, which must then be a URL that names the user.
type OrderDatabase struct {
	URL          string `env:"ORDER_DATABASE_URL" envDefault:"postgres://postgres@localhost:5432/orderdb?sslmode=disable"`
	PasswordFile string `env:"ORDER_DATABASE_PASSWORD_FILE"`
}

// PaymentDatabase is payment-service's PostgreSQL, as OrderDatabase.
type PaymentDatabase struct {
	URL          string `env:"PAYMENT_DATABASE_URL" envDefault:"postgres://postgres@localhost:5432/paymentdb?sslmode=disable"`
	PasswordFile string `env:"PAYMENT_DATABASE_PASSWORD_FILE"`
}

// InventoryDatabase is inventory-service's PostgreSQL, as OrderDatabase.
type InventoryDatabase struct {
	URL          string `env:"INVENTORY_DATABASE_URL" envDefault:"postgres://postgres@localhost:5432/inventorydb?sslmode=disable"`
	PasswordFile string `env:"INVENTORY_DATABASE_PASSWORD_FILE"`
}

// ShippingDatabase is shipping-service's PostgreSQL, as OrderDatabase.
type ShippingDatabase struct {
	URL          string `env:"SHIPPING_DATABASE_URL" envDefault:"postgres://postgres@localhost:5432/shippingdb?sslmode=disable"`
	PasswordFile string `env:"SHIPPING_DATABASE_PASSWORD_FILE"`
}

func (d *OrderDatabase) resolve() (err error) {
	d.URL, err = withPasswordFile("ORDER_DATABASE_PASSWORD_FILE", d.URL, d.PasswordFile)
	return err
}

func (d *PaymentDatabase) resolve() (err error) {
	d.URL, err = withPasswordFile("PAYMENT_DATABASE_PASSWORD_FILE", d.URL, d.PasswordFile)
	return err
}

func (d *InventoryDatabase) resolve() (err error) {
	d.URL, err = withPasswordFile("INVENTORY_DATABASE_PASSWORD_FILE", d.URL, d.PasswordFile)
	return err
}

func (d *ShippingDatabase) resolve() (err error) {
	d.URL, err = withPasswordFile("SHIPPING_DATABASE_PASSWORD_FILE", d.URL, d.PasswordFile)
	return err
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

// Security is how a service guards its API ports (README, "Who may do what"): TLS from
// certificate files and bearer-token checks, each off unless set. The ops port is never
// guarded.
type Security struct {
	// TLSCertFile and TLSKeyFile are the PEM certificate and key of the API ports; both or
	// neither (plaintext).
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`
	// Tokens are checked once one of AuthJWKSFile (read at start) and AuthJWKSURL (fetched
	// over HTTPS and refreshed) names the keys; then AuthIssuer and AuthAudience are required.
	AuthJWKSFile string `env:"AUTH_JWKS_FILE"`
	AuthJWKSURL  string `env:"AUTH_JWKS_URL"`
	AuthIssuer   string `env:"AUTH_ISSUER"`
	AuthAudience string `env:"AUTH_AUDIENCE"`
}

// TokensChecked reports whether s turns bearer-token checks on.
func (s Security) TokensChecked() bool { return s.AuthJWKSFile != "" || s.AuthJWKSURL != "" }

// Validate checks that the settings go together.
func (s Security) Validate() error {
	var errs []error
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLS_CERT_FILE and TLS_KEY_FILE must be set together"))
	}
	if s.AuthJWKSFile != "" && s.AuthJWKSURL != "" {
		errs = append(errs, errors.New("AUTH_JWKS_FILE and AUTH_JWKS_URL: set one, not both"))
	}
	if s.AuthJWKSURL != "" {
		if u, err := url.Parse(s.AuthJWKSURL); err != nil || u.Host == "" || u.Scheme != "https" && u.Scheme != "http" {
			errs = append(errs, errors.New("AUTH_JWKS_URL: not an https:// URL"))
		}
	}
	if s.TokensChecked() {
		if s.AuthIssuer == "" {
			errs = append(errs, errors.New("AUTH_ISSUER: required when tokens are checked (AUTH_JWKS_FILE or AUTH_JWKS_URL)"))
		}
		if s.AuthAudience == "" {
			errs = append(errs, errors.New("AUTH_AUDIENCE: required when tokens are checked (AUTH_JWKS_FILE or AUTH_JWKS_URL)"))
		}
	} else if s.AuthIssuer != "" || s.AuthAudience != "" {
		errs = append(errs, errors.New("AUTH_ISSUER and AUTH_AUDIENCE need AUTH_JWKS_FILE or AUTH_JWKS_URL: tokens are not checked without keys"))
	}
	return errors.Join(errs...)
}

// Order is order-service's configuration.
type Order struct {
	Log      Log
	Broker   Broker
	Database OrderDatabase
	Security Security
	GRPCAddr Addr `env:"ORDER_GRPC_ADDR" envDefault:":50051"`
	HTTPAddr Addr `env:"ORDER_HTTP_ADDR" envDefault:":3001"`
	OpsAddr  Addr `env:"ORDER_OPS_ADDR" envDefault:":9101"`
	Saga     Saga
	Inbox    Inbox
	CORS     CORS
	API      API
}

// CORS is which browser pages, by origin, may call the REST facade.
type CORS struct {
	// AllowedOrigins are the origins granted (preflights, the REST routes, the watch stream, the
	// OpenAPI documents); none: the facade sends no CORS headers and browsers keep other
	// origins out.
	AllowedOrigins Origins `env:"ORDER_CORS_ALLOWED_ORIGINS"`
}

// Origins is a comma-separated list of browser origins, scheme://host[:port], each as a browser
// writes it in an Origin header (lower case, no default port), so that comparing is exact.
type Origins []string

// UnmarshalText parses the list. A wildcard is refused: granting every origin is what leaving
// the variable unset and putting a proxy in front is for, and it must never meet credentials.
func (o *Origins) UnmarshalText(text []byte) error {
	var list Origins
	for s := range strings.SplitSeq(string(text), ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		origin, err := parseOrigin(s)
		if err != nil {
			return err
		}
		if !slices.Contains(list, origin) {
			list = append(list, origin)
		}
	}
	*o = list
	return nil
}

// String lists the origins as the variable does.
func (o Origins) String() string { return strings.Join(o, ",") }

// parseOrigin returns s serialized as a browser sends it, or an error saying why s is no origin.
func parseOrigin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("%q is not an origin: want scheme://host[:port], e.g. https://shop.example.com", s)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("%q is not an http:// or https:// origin", s)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("%q is not an origin: only scheme://host[:port], no user, path, query or fragment", s)
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if strings.Contains(host, "*") {
		return "", fmt.Errorf("%q: wildcards are not allowed, list each origin", s)
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: port %q is not a port number", s, port)
		}
		if !(scheme == "http" && port == "80" || scheme == "https" && port == "443") {
			host += ":" + port
		}
	}
	return scheme + "://" + host, nil
}

// API bounds order-service's API calls.
type API struct {
	// CreateTimeout bounds a CreateOrder call whatever its caller's deadline: past it the call
	// answers UNAVAILABLE (retry with the same request_id) instead of waiting on a database
	// that does not answer.
	CreateTimeout time.Duration `env:"ORDER_CREATE_TIMEOUT" envDefault:"30s"`
}

// Validate checks that the bound is positive.
func (a API) Validate() error {
	if a.CreateTimeout <= 0 {
		return fmt.Errorf("ORDER_CREATE_TIMEOUT: %s is not a positive duration", a.CreateTimeout)
	}
	return nil
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

// Inbox is how long a service remembers the events it has handled.
type Inbox struct {
	// Retention is how long an event's id stays in the inbox (idempotency_keys) after it took
	// effect. A copy of the event arriving later would take effect again, so it must be far
	// longer than any redelivery: a duplicate publish or a redelivery comes within seconds, a
	// backlog waits as long as its consumer is down. The default outlasts a week-long outage.
	Retention time.Duration `env:"INBOX_RETENTION" envDefault:"168h"`
}

// Validate refuses a retention under a minute, which redeliveries routinely outlast.
func (i Inbox) Validate() error {
	if i.Retention < time.Minute {
		return fmt.Errorf("INBOX_RETENTION: %s is shorter than the minimum of 1m", i.Retention)
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
	Inbox       Inbox
}

// Inventory is inventory-service's configuration.
type Inventory struct {
	Log      Log
	Broker   Broker
	Database InventoryDatabase
	Security Security
	GRPCAddr Addr `env:"INVENTORY_GRPC_ADDR" envDefault:":50052"`
	OpsAddr  Addr `env:"INVENTORY_OPS_ADDR" envDefault:":9103"`
	Inbox    Inbox
}

// Shipping is shipping-service's configuration.
type Shipping struct {
	Log         Log
	Broker      Broker
	Database    ShippingDatabase
	OpsAddr     Addr   `env:"SHIPPING_OPS_ADDR" envDefault:":9104"`
	BaseFreight Amount `env:"SHIPPING_BASE_FREIGHT" envDefault:"10.00"`
	FailureRate Rate   `env:"SHIPPING_FAILURE_RATE" envDefault:"0"`
	Inbox       Inbox
}

// Ordersctl is where the operator tool finds the broker and the four databases (the same
// variables, and so the same defaults, as the services) and the gRPC APIs of order and
// inventory.
type Ordersctl struct {
	Broker    Broker
	Order     OrderDatabase
	Payment   PaymentDatabase
	Inventory InventoryDatabase
	Shipping  ShippingDatabase

	OrderAddr     string `env:"ORDERSCTL_ORDER_ADDR" envDefault:"localhost:50051"`
	InventoryAddr string `env:"ORDERSCTL_INVENTORY_ADDR" envDefault:"localhost:50052"`
	TLS           bool   `env:"ORDERSCTL_TLS"`         // dial with TLS, trusting the system's roots or TLSCAFile
	TLSCAFile     string `env:"ORDERSCTL_TLS_CA_FILE"` // PEM certificates to trust; implies TLS
	Token         string `env:"ORDERSCTL_TOKEN" secret:"true"`
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
	if err := resolve(&cfg); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := validate(&cfg); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// resolver is a part of a configuration that reads what its variables point to (a password
// file) once they are parsed.
type resolver interface{ resolve() error }

// resolve runs resolve on every part of cfg that has it.
func resolve(cfg any) error {
	var errs []error
	walk(cfg, func(f field) {
		if r, ok := f.value.Addr().Interface().(resolver); ok && f.env == "" {
			errs = append(errs, r.resolve())
		}
	})
	return errors.Join(errs...)
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

// Runtime is what the service runner (pkg/service) reads of a service's configuration: the
// parts every service has.
type Runtime struct {
	Log         Log
	Broker      Broker
	DatabaseURL string
	OpsAddr     Addr
	Inbox       Inbox
	Security    Security // off for the services without an API port
}

func (c Order) Runtime() Runtime {
	return Runtime{Log: c.Log, Broker: c.Broker, DatabaseURL: c.Database.URL, OpsAddr: c.OpsAddr, Inbox: c.Inbox, Security: c.Security}
}

func (c Payment) Runtime() Runtime {
	return Runtime{Log: c.Log, Broker: c.Broker, DatabaseURL: c.Database.URL, OpsAddr: c.OpsAddr, Inbox: c.Inbox}
}

func (c Inventory) Runtime() Runtime {
	return Runtime{Log: c.Log, Broker: c.Broker, DatabaseURL: c.Database.URL, OpsAddr: c.OpsAddr, Inbox: c.Inbox, Security: c.Security}
}

func (c Shipping) Runtime() Runtime {
	return Runtime{Log: c.Log, Broker: c.Broker, DatabaseURL: c.Database.URL, OpsAddr: c.OpsAddr, Inbox: c.Inbox}
}
