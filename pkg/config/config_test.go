package config_test

import (
	"bytes"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/ordersaga/ordersaga/pkg/config"
)

func environ(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	o, err := config.Load[config.Order](environ(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Order{
		Log:      config.Log{Level: slog.LevelInfo, Format: config.LogAuto},
		Broker:   config.Broker{AMQPURL: "amqp://guest:guest@localhost:5672/"},
		Database: config.OrderDatabase{URL: "postgres://postgres@localhost:5432/orderdb?sslmode=disable"},
		GRPCAddr: ":50051", HTTPAddr: ":3001", OpsAddr: ":9101",
		Saga:  config.Saga{Timeout: 10 * time.Minute},
		Inbox: config.Inbox{Retention: 7 * 24 * time.Hour},
		API:   config.API{CreateTimeout: 30 * time.Second},
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("order defaults = %+v, want %+v", o, want)
	}
	p, err := config.Load[config.Payment](environ(nil))
	if err != nil {
		t.Fatal(err)
	}
	if p.AmountLimit.Minor() != 1_000_000 || p.DeclineRate != 0 || p.OpsAddr != ":9102" {
		t.Errorf("payment defaults = %+v", p)
	}
	s, err := config.Load[config.Shipping](environ(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s.BaseFreight.Minor() != 1000 || s.FailureRate != 0 || s.OpsAddr != ":9104" {
		t.Errorf("shipping defaults = %+v", s)
	}
	for _, b := range config.Binaries() {
		if err := b.Check(environ(nil)); err != nil {
			t.Errorf("%s: defaults do not load: %v", b.Name, err)
		}
	}
}

func TestInboxRetentionHasAFloor(t *testing.T) {
	t.Parallel()
	if _, err := config.Load[config.Shipping](environ(map[string]string{"INBOX_RETENTION": "30s"})); err == nil ||
		!strings.Contains(err.Error(), "INBOX_RETENTION") {
		t.Errorf("INBOX_RETENTION=30s: %v, want refused naming the variable", err)
	}
	s, err := config.Load[config.Shipping](environ(map[string]string{"INBOX_RETENTION": "36h"}))
	if err != nil || s.Inbox.Retention != 36*time.Hour {
		t.Errorf("INBOX_RETENTION=36h: %v, %v", s.Inbox.Retention, err)
	}
}

func TestLoadReadsTheEnvironment(t *testing.T) {
	t.Parallel()
	p, err := config.Load[config.Payment](environ(map[string]string{
		"LOG_LEVEL":            "debug",
		"AMQP_URL":             "amqp://u:p@rabbit-0:5672/,amqp://u:p@rabbit-1:5672/",
		"PAYMENT_DATABASE_URL": "postgres://app@db-rw,db-ro:5432/paymentdb?target_session_attrs=read-write",
		"PAYMENT_OPS_ADDR":     "127.0.0.1:19102",
		"PAYMENT_AMOUNT_LIMIT": "12.5",
		"PAYMENT_DECLINE_RATE": "0.25",
		"ORDER_GRPC_ADDR":      "not an address, and not payment's",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Log.Level != slog.LevelDebug || p.OpsAddr != "127.0.0.1:19102" || p.AmountLimit.Minor() != 1250 ||
		p.DeclineRate != 0.25 || !strings.HasPrefix(p.Database.URL, "postgres://app@db-rw,db-ro") {
		t.Errorf("payment = %+v", p)
	}
	// An empty variable is unset: the default applies.
	o, err := config.Load[config.Order](environ(map[string]string{"ORDER_GRPC_ADDR": ""}))
	if err != nil || o.GRPCAddr != ":50051" {
		t.Errorf("empty ORDER_GRPC_ADDR: %v, %v", o.GRPCAddr, err)
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	for name, kv := range map[string]map[string]string{
		"level":         {"LOG_LEVEL": "loud"},
		"addr":          {"PAYMENT_OPS_ADDR": "9102"},
		"amount":        {"PAYMENT_AMOUNT_LIMIT": "10.001"},
		"negative":      {"PAYMENT_AMOUNT_LIMIT": "-1"},
		"rate":          {"PAYMENT_DECLINE_RATE": "1.5"},
		"rate syntax":   {"PAYMENT_DECLINE_RATE": "half"},
		"amqp scheme":   {"AMQP_URL": "http://guest:hunter2@rabbit:5672/"},
		"amqp in list":  {"AMQP_URL": "amqp://guest:hunter2@rabbit-0/,rabbit-1"},
		"database":      {"PAYMENT_DATABASE_URL": "postgres://app:hunter2@db:notaport/paymentdb"},
		"database keys": {"PAYMENT_DATABASE_URL": "host=db password=hunter2 port=x"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load[config.Payment](environ(kv))
			if err == nil {
				t.Fatalf("%v loaded", kv)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the password: %v", err)
			}
			for k := range kv {
				if !strings.Contains(err.Error(), k+": ") {
					t.Errorf("error does not name %s: %v", k, err)
				}
			}
		})
	}
}

func TestLogValueMasksSecrets(t *testing.T) {
	t.Parallel()
	o, err := config.Load[config.Ordersctl](environ(map[string]string{
		"AMQP_URL":               "amqp://saga:hunter2@rabbit-0:5672/,amqps://saga:hunter2@rabbit-1:5671/vhost",
		"ORDER_DATABASE_URL":     "postgres://app:hunter2@db-rw:5432/orderdb?sslmode=require",
		"PAYMENT_DATABASE_URL":   "host=db user=app password='hun ter2' dbname=paymentdb",
		"INVENTORY_DATABASE_URL": "postgres://app@db/inventorydb?password=hunter2&sslmode=disable",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configuration", "config", o)
	line := buf.String()
	for _, secret := range []string{"hunter2", "hun ter2"} {
		if strings.Contains(line, secret) {
			t.Errorf("logged a password: %s", line)
		}
	}
	for _, want := range []string{
		`"AMQP_URL":"amqp://saga:xxxxx@rabbit-0:5672/,amqps://saga:xxxxx@rabbit-1:5671/vhost"`,
		`"ORDER_DATABASE_URL":"postgres://app:xxxxx@db-rw:5432/orderdb?sslmode=require"`,
		`"PAYMENT_DATABASE_URL":"host=db user=app password=xxxxx dbname=paymentdb"`,
		`"INVENTORY_DATABASE_URL":"postgres://app@db/inventorydb?password=xxxxx&sslmode=disable"`,
		`"SHIPPING_DATABASE_URL":"postgres://postgres@localhost:5432/shippingdb?sslmode=disable"`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s:\n%s", want, line)
		}
	}
}

func TestLogValueMasksFileContent(t *testing.T) {
	t.Parallel()
	type withFile struct {
		Key   string `env:"SOME_KEY_FILE,file"`
		Token string `env:"SOME_TOKEN" secret:"true"`
		Plain string `env:"SOME_PLAIN"`
	}
	vars := config.VarsOf(&withFile{})
	if !vars[0].Secret || !vars[1].Secret || vars[2].Secret {
		t.Errorf("secrets = %+v", vars)
	}
}

func TestVarsOfAgreesWithEnv(t *testing.T) {
	t.Parallel()
	for _, b := range config.Binaries() {
		params, err := env.GetFieldParams(b.Config)
		if err != nil {
			t.Fatal(err)
		}
		var fromEnv, ours []string
		for _, p := range params {
			fromEnv = append(fromEnv, p.Key+"="+p.DefaultValue)
		}
		for _, v := range config.VarsOf(b.Config) {
			ours = append(ours, v.Name+"="+v.Default)
		}
		if !slices.Equal(fromEnv, ours) {
			t.Errorf("%s: env reads %v, VarsOf lists %v", b.Name, fromEnv, ours)
		}
	}
}

func TestVars(t *testing.T) {
	t.Parallel()
	var amqp, level *config.Var
	vars := config.Vars()
	for i, v := range vars {
		switch v.Name {
		case "AMQP_URL":
			amqp = &vars[i]
		case "LOG_LEVEL":
			level = &vars[i]
		}
	}
	if amqp == nil || !slices.Equal(amqp.Binaries, []string{"order", "payment", "inventory", "shipping", "ordersctl"}) {
		t.Errorf("AMQP_URL = %+v", amqp)
	}
	if level == nil || !slices.Equal(level.Binaries, []string{"order", "payment", "inventory", "shipping"}) {
		t.Errorf("LOG_LEVEL = %+v", level)
	}
}

func TestSecurity(t *testing.T) {
	t.Parallel()
	on := map[string]string{"AUTH_JWKS_FILE": "/keys/jwks.json", "AUTH_ISSUER": "https://issuer.test", "AUTH_AUDIENCE": "ordersaga"}
	o, err := config.Load[config.Order](environ(on))
	if err != nil || !o.Security.TokensChecked() {
		t.Fatalf("tokens on: %+v, %v", o.Security, err)
	}
	if i, err := config.Load[config.Inventory](environ(nil)); err != nil || i.Security.TokensChecked() || i.Security.TLSCertFile != "" {
		t.Errorf("defaults: %+v, %v", i.Security, err)
	}
	with := func(kv map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range on {
			m[k] = v
		}
		for k, v := range kv {
			m[k] = v
		}
		return m
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"cert without key": {map[string]string{"TLS_CERT_FILE": "/tls/cert.pem"}, "TLS_KEY_FILE"},
		"key without cert": {map[string]string{"TLS_KEY_FILE": "/tls/key.pem"}, "TLS_CERT_FILE"},
		"both JWKS":        {with(map[string]string{"AUTH_JWKS_URL": "https://issuer.test/jwks.json"}), "AUTH_JWKS_URL"},
		"JWKS URL":         {map[string]string{"AUTH_JWKS_URL": "issuer.test/jwks", "AUTH_ISSUER": "i", "AUTH_AUDIENCE": "a"}, "AUTH_JWKS_URL"},
		"no issuer":        {with(map[string]string{"AUTH_ISSUER": ""}), "AUTH_ISSUER"},
		"no audience":      {with(map[string]string{"AUTH_AUDIENCE": ""}), "AUTH_AUDIENCE"},
		"issuer, no keys":  {map[string]string{"AUTH_ISSUER": "https://issuer.test"}, "AUTH_JWKS_FILE"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, load := range []func() error{
				func() error { _, err := config.Load[config.Order](environ(tc.env)); return err },
				func() error { _, err := config.Load[config.Inventory](environ(tc.env)); return err },
			} {
				if err := load(); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.want)
				}
			}
		})
	}
}

func TestOrdersctlTokenIsMasked(t *testing.T) {
	t.Parallel()
	c, err := config.Load[config.Ordersctl](environ(map[string]string{"ORDERSCTL_TOKEN": "eyJhunter2", "ORDERSCTL_TLS": "true"}))
	if err != nil || !c.TLS || c.Token != "eyJhunter2" || c.OrderAddr != "localhost:50051" {
		t.Fatalf("ordersctl = %+v, %v", c, err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configuration", "config", c)
	if strings.Contains(buf.String(), "hunter2") || !strings.Contains(buf.String(), `"ORDERSCTL_TOKEN":"xxxxx"`) {
		t.Errorf("log line: %s", buf.String())
	}
}

func TestSagaTimeout(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		value   string
		want    time.Duration
		wantErr bool
	}{
		{"", 10 * time.Minute, false},
		{"3s", 3 * time.Second, false},
		{"1h30m", 90 * time.Minute, false},
		{"0s", 0, true},
		{"-1m", 0, true},
		{"ten minutes", 0, true},
	} {
		o, err := config.Load[config.Order](environ(map[string]string{"ORDER_SAGA_TIMEOUT": tt.value}))
		if (err != nil) != tt.wantErr {
			t.Errorf("ORDER_SAGA_TIMEOUT=%q: error %v, want error %v", tt.value, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "ORDER_SAGA_TIMEOUT") {
				t.Errorf("ORDER_SAGA_TIMEOUT=%q: error %v does not name the variable", tt.value, err)
			}
			continue
		}
		if o.Saga.Timeout != tt.want {
			t.Errorf("ORDER_SAGA_TIMEOUT=%q: timeout %s, want %s", tt.value, o.Saga.Timeout, tt.want)
		}
	}
}

func TestCORSAllowedOrigins(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]string{
		"":                      "",
		"http://127.0.0.1:8099": "http://127.0.0.1:8099",
		" https://Shop.Example.com:443/ , http://localhost:80,http://[::1]:3000": "https://shop.example.com,http://localhost,http://[::1]:3000",
		"https://a.example,https://a.example":                                    "https://a.example",
	} {
		cfg, err := config.Load[config.Order](environ(map[string]string{"ORDER_CORS_ALLOWED_ORIGINS": value}))
		if err != nil {
			t.Errorf("%q: %v", value, err)
			continue
		}
		if got := cfg.CORS.AllowedOrigins.String(); got != want {
			t.Errorf("%q: origins %q, want %q", value, got, want)
		}
	}
	for _, bad := range []string{"*", "null", "shop.example.com", "ftp://shop.example.com", "https://*.example.com",
		"https://shop.example.com/path", "https://u:p@shop.example.com", "https://shop.example.com?x=1", "https://shop.example.com:99999"} {
		_, err := config.Load[config.Order](environ(map[string]string{"ORDER_CORS_ALLOWED_ORIGINS": "https://ok.example," + bad}))
		if err == nil || !strings.Contains(err.Error(), "ORDER_CORS_ALLOWED_ORIGINS: ") {
			t.Errorf("%q: error %v, want one naming ORDER_CORS_ALLOWED_ORIGINS", bad, err)
		}
	}
}

func TestLogFormat(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]config.LogFormat{"": config.LogAuto, "json": config.LogJSON, "TEXT": config.LogText, "auto": config.LogAuto} {
		cfg, err := config.Load[config.Shipping](environ(map[string]string{"LOG_FORMAT": value}))
		if err != nil || cfg.Log.Format != want {
			t.Errorf("LOG_FORMAT=%q: %q, %v; want %q", value, cfg.Log.Format, err, want)
		}
	}
	if _, err := config.Load[config.Shipping](environ(map[string]string{"LOG_FORMAT": "pretty"})); err == nil || !strings.Contains(err.Error(), "LOG_FORMAT: ") {
		t.Errorf("LOG_FORMAT=pretty: error %v, want one naming LOG_FORMAT", err)
	}
}
