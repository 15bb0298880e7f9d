// Package config holds the parts of configuration that the binaries share: the log, the broker,
// a database, the guard of the API ports, the inbox, and the value types their variables parse
// into. Each binary composes its own configuration from these parts next to its main, and Load
// reads it from the environment with caarlos0/env, the defaults in the struct tags.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

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

// Validate checks that every address of the list is an AMQP URL.
func (b Broker) Validate() error {
	for u := range strings.SplitSeq(b.AMQPURL, ",") {
		if _, err := amqp.ParseURI(strings.TrimSpace(u)); err != nil {
			return fmt.Errorf("AMQP_URL: %s", maskURL(err.Error()))
		}
	}
	return nil
}

// Database is a service's PostgreSQL, read under the prefix of the field that holds it:
//
//	Database config.Database `envPrefix:"ORDER_"` // ORDER_DATABASE_URL, ORDER_DATABASE_PASSWORD_FILE
//
// The URL defaults to the database named after the prefix on the local server
// (postgres://postgres@localhost:5432/orderdb?sslmode=disable), see databaseDefault. With
// PasswordFile set, Load puts that file's password into URL, which must then be a URL that
// names the user.
type Database struct {
	URL          DatabaseURL `env:"DATABASE_URL"`
	PasswordFile string      `env:"DATABASE_PASSWORD_FILE"`
}

// DatabaseURL is a libpq URL or keyword/value string, as pgx reads it.
type DatabaseURL string

// UnmarshalText accepts what pgx accepts as a connection string.
func (u *DatabaseURL) UnmarshalText(text []byte) error {
	if _, err := pgconn.ParseConfig(string(text)); err != nil {
		return errors.New(maskURL(err.Error()))
	}
	*u = DatabaseURL(text)
	return nil
}

// String returns the URL, password included: log a configuration with LogValue.
func (u DatabaseURL) String() string { return string(u) }

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

// Service is what every service reads alike: its log, its broker and its inbox.
type Service struct {
	Log    Log
	Broker Broker
	Inbox  Inbox
}

// Validate checks the parts that have rules.
func (s Service) Validate() error { return errors.Join(s.Broker.Validate(), s.Inbox.Validate()) }

// Runtime is what the service runner (pkg/service) reads of a service's configuration.
type Runtime struct {
	Service
	Database Database
	OpsAddr  Addr
	Security Security // off for the services without an API port
}

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
