package main

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ordersaga/ordersaga/pkg/config"
)

// Config is order-service's configuration.
type Config struct {
	config.Service
	Database config.Database `envPrefix:"ORDER_"`
	Security config.Security
	GRPCAddr config.Addr `env:"ORDER_GRPC_ADDR" envDefault:":50051"`
	HTTPAddr config.Addr `env:"ORDER_HTTP_ADDR" envDefault:":3001"`
	OpsAddr  config.Addr `env:"ORDER_OPS_ADDR" envDefault:":9101"`
	// SagaTimeout is the saga deadline: an order not terminal this long after its creation is
	// cancelled and compensated by order-service.
	SagaTimeout time.Duration `env:"ORDER_SAGA_TIMEOUT" envDefault:"10m"`
	// CreateTimeout bounds a CreateOrder call whatever its caller's deadline: past it the call
	// answers UNAVAILABLE (retry with the same request_id) instead of waiting on a database
	// that does not answer.
	CreateTimeout time.Duration `env:"ORDER_CREATE_TIMEOUT" envDefault:"30s"`
	// AllowedOrigins are the browser origins granted by CORS (preflights, the REST routes, the
	// watch stream, the OpenAPI documents); none: the facade sends no CORS headers and
	// browsers keep other origins out.
	AllowedOrigins Origins `env:"ORDER_CORS_ALLOWED_ORIGINS"`
}

// Validate checks what the variables' types do not.
func (c Config) Validate() error {
	var errs []error
	if c.SagaTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ORDER_SAGA_TIMEOUT: %s is not a positive duration", c.SagaTimeout))
	}
	if c.CreateTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ORDER_CREATE_TIMEOUT: %s is not a positive duration", c.CreateTimeout))
	}
	return errors.Join(c.Service.Validate(), c.Security.Validate(), errors.Join(errs...))
}

// Runtime is what the service runner reads.
func (c Config) Runtime() config.Runtime {
	return config.Runtime{Service: c.Service, Database: c.Database, OpsAddr: c.OpsAddr, Security: c.Security}
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
