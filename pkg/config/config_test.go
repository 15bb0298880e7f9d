package config_test

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/pkg/config"
)

func environ(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// sample is a service's configuration made of the shared parts, as a main composes one.
type sample struct {
	config.Service
	Database    config.Database `envPrefix:"SAMPLE_"`
	Security    config.Security
	OpsAddr     config.Addr   `env:"SAMPLE_OPS_ADDR" envDefault:":9102"`
	AmountLimit config.Amount `env:"SAMPLE_AMOUNT_LIMIT" envDefault:"10000.00"`
	Rate        config.Rate   `env:"SAMPLE_RATE" envDefault:"0"`
	Timeout     time.Duration `env:"SAMPLE_TIMEOUT" envDefault:"10m"`
}

func (s sample) Validate() error { return errors.Join(s.Service.Validate(), s.Security.Validate()) }

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	got, err := config.Load[sample](environ(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := sample{
		Service: config.Service{
			Log:    config.Log{Level: slog.LevelInfo, Format: config.LogAuto},
			Broker: config.Broker{AMQPURL: "amqp://guest:guest@localhost:5672/"},
			Inbox:  config.Inbox{Retention: 7 * 24 * time.Hour},
		},
		Database:    config.Database{URL: "postgres://postgres@localhost:5432/sampledb?sslmode=disable"},
		OpsAddr:     ":9102",
		AmountLimit: 1_000_000,
		Timeout:     10 * time.Minute,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
}

func TestInboxRetentionHasAFloor(t *testing.T) {
	t.Parallel()
	if _, err := config.Load[sample](environ(map[string]string{"INBOX_RETENTION": "30s"})); err == nil ||
		!strings.Contains(err.Error(), "INBOX_RETENTION") {
		t.Errorf("INBOX_RETENTION=30s: %v, want refused naming the variable", err)
	}
	s, err := config.Load[sample](environ(map[string]string{"INBOX_RETENTION": "36h"}))
	if err != nil || s.Inbox.Retention != 36*time.Hour {
		t.Errorf("INBOX_RETENTION=36h: %v, %v", s.Inbox.Retention, err)
	}
}

func TestLoadReadsTheEnvironment(t *testing.T) {
	t.Parallel()
	s, err := config.Load[sample](environ(map[string]string{
		"LOG_LEVEL":           "debug",
		"AMQP_URL":            "amqp://u:p@rabbit-0:5672/,amqp://u:p@rabbit-1:5672/",
		"SAMPLE_DATABASE_URL": "postgres://app@db-rw,db-ro:5432/sampledb?target_session_attrs=read-write",
		"SAMPLE_OPS_ADDR":     "127.0.0.1:19102",
		"SAMPLE_AMOUNT_LIMIT": "12.5",
		"SAMPLE_RATE":         "0.25",
		"ORDER_GRPC_ADDR":     "not an address, and not read",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s.Log.Level != slog.LevelDebug || s.OpsAddr != "127.0.0.1:19102" || s.AmountLimit.Minor() != 1250 ||
		s.Rate != 0.25 || !strings.HasPrefix(s.Database.URL.String(), "postgres://app@db-rw,db-ro") {
		t.Errorf("sample = %+v", s)
	}
	// An empty variable is unset: the default applies.
	s, err = config.Load[sample](environ(map[string]string{"SAMPLE_OPS_ADDR": ""}))
	if err != nil || s.OpsAddr != ":9102" {
		t.Errorf("empty SAMPLE_OPS_ADDR: %v, %v", s.OpsAddr, err)
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	for name, kv := range map[string]map[string]string{
		"level":         {"LOG_LEVEL": "loud"},
		"format":        {"LOG_FORMAT": "pretty"},
		"addr":          {"SAMPLE_OPS_ADDR": "9102"},
		"amount":        {"SAMPLE_AMOUNT_LIMIT": "10.001"},
		"negative":      {"SAMPLE_AMOUNT_LIMIT": "-1"},
		"rate":          {"SAMPLE_RATE": "1.5"},
		"rate syntax":   {"SAMPLE_RATE": "half"},
		"duration":      {"SAMPLE_TIMEOUT": "ten minutes"},
		"amqp scheme":   {"AMQP_URL": "http://guest:hunter2@rabbit:5672/"},
		"amqp in list":  {"AMQP_URL": "amqp://guest:hunter2@rabbit-0/,rabbit-1"},
		"database":      {"SAMPLE_DATABASE_URL": "postgres://app:hunter2@db:notaport/sampledb"},
		"database keys": {"SAMPLE_DATABASE_URL": "host=db password=hunter2 port=x"},
		"two at once":   {"SAMPLE_RATE": "2", "SAMPLE_DATABASE_URL": "postgres://app:hunter2@db:notaport/sampledb"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load[sample](environ(kv))
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

// twoDatabases reads one part under two prefixes, as ordersctl reads the four databases.
type twoDatabases struct {
	Broker config.Broker
	Order  config.Database `envPrefix:"ORDER_"`
	Other  config.Database `envPrefix:"PAYMENT_"`
	Token  string          `env:"SOME_TOKEN"`
	Key    string          `env:"SOME_KEY_FILE,file"`
}

func TestVars(t *testing.T) {
	t.Parallel()
	vars, err := config.Vars[twoDatabases]()
	if err != nil {
		t.Fatal(err)
	}
	want := []config.Var{
		{Name: "AMQP_URL", Default: "amqp://guest:guest@localhost:5672/"},
		{Name: "AMQP_PASSWORD_FILE"},
		{Name: "ORDER_DATABASE_URL", Default: "postgres://postgres@localhost:5432/orderdb?sslmode=disable"},
		{Name: "ORDER_DATABASE_PASSWORD_FILE"},
		{Name: "PAYMENT_DATABASE_URL", Default: "postgres://postgres@localhost:5432/paymentdb?sslmode=disable"},
		{Name: "PAYMENT_DATABASE_PASSWORD_FILE"},
		{Name: "SOME_TOKEN", Secret: true},
		{Name: "SOME_KEY_FILE", Secret: true},
	}
	if !slices.Equal(vars, want) {
		t.Errorf("Vars = %+v\nwant   %+v", vars, want)
	}
	c, err := config.Load[twoDatabases](environ(map[string]string{"PAYMENT_DATABASE_URL": "postgres://app@db/payments"}))
	if err != nil || c.Order.URL != config.DatabaseURL(want[2].Default) || c.Other.URL != "postgres://app@db/payments" {
		t.Errorf("loaded %+v, %v", c, err)
	}
}

func TestLogValueMasksSecrets(t *testing.T) {
	t.Parallel()
	getenv := environ(map[string]string{
		"AMQP_URL":             "amqp://saga:hunter2@rabbit-0:5672/,amqps://saga:hunter2@rabbit-1:5671/vhost",
		"ORDER_DATABASE_URL":   "postgres://app:hunter2@db-rw:5432/orderdb?sslmode=require",
		"PAYMENT_DATABASE_URL": "host=db user=app password='hun ter2' dbname=paymentdb",
		"SOME_TOKEN":           "eyJhunter2",
	})
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configuration", "config", config.LogValue[twoDatabases](getenv))
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
		`"SOME_TOKEN":"xxxxx"`,
		`"SOME_KEY_FILE":""`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s:\n%s", want, line)
		}
	}
}

func TestSecurity(t *testing.T) {
	t.Parallel()
	on := map[string]string{"AUTH_JWKS_FILE": "/keys/jwks.json", "AUTH_ISSUER": "https://issuer.test", "AUTH_AUDIENCE": "ordersaga"}
	s, err := config.Load[sample](environ(on))
	if err != nil || !s.Security.TokensChecked() {
		t.Fatalf("tokens on: %+v, %v", s.Security, err)
	}
	if s, err := config.Load[sample](environ(nil)); err != nil || s.Security.TokensChecked() || s.Security.TLSCertFile != "" {
		t.Errorf("defaults: %+v, %v", s.Security, err)
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
			if _, err := config.Load[sample](environ(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.want)
			}
		})
	}
}

func TestLogFormat(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]config.LogFormat{"": config.LogAuto, "json": config.LogJSON, "TEXT": config.LogText, "auto": config.LogAuto} {
		cfg, err := config.Load[sample](environ(map[string]string{"LOG_FORMAT": value}))
		if err != nil || cfg.Log.Format != want {
			t.Errorf("LOG_FORMAT=%q: %q, %v; want %q", value, cfg.Log.Format, err, want)
		}
	}
}

func TestInspect(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if status, done := config.Inspect[twoDatabases]([]string{config.FlagVars}, environ(nil), &stdout, &stderr); !done || status != 0 {
		t.Fatalf("%s: status %d, done %v, stderr %s", config.FlagVars, status, done, &stderr)
	}
	got, err := config.ReadVars(&stdout)
	want, _ := config.Vars[twoDatabases]()
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("%s printed %+v (%v), want %+v", config.FlagVars, got, err, want)
	}
	if status, done := config.Inspect[twoDatabases]([]string{config.FlagCheck}, environ(nil), &stdout, &stderr); !done || status != 0 {
		t.Errorf("%s with the defaults: status %d, stderr %s", config.FlagCheck, status, &stderr)
	}
	stderr.Reset()
	bad := environ(map[string]string{"ORDER_DATABASE_URL": ":bad"})
	if status, done := config.Inspect[twoDatabases]([]string{config.FlagCheck}, bad, &stdout, &stderr); !done || status != 1 ||
		!strings.Contains(stderr.String(), "ORDER_DATABASE_URL: ") {
		t.Errorf("%s with a bad URL: status %d, stderr %s", config.FlagCheck, status, &stderr)
	}
	if _, done := config.Inspect[twoDatabases]([]string{"audit"}, bad, &stdout, &stderr); done {
		t.Error("answered a command that is not its flag")
	}
}
