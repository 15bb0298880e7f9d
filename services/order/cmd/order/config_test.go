package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/pkg/config"
)

func environ(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load[Config](environ(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != ":50051" || c.HTTPAddr != ":3001" || c.OpsAddr != ":9101" || c.SagaTimeout != 10*time.Minute ||
		c.CreateTimeout != 30*time.Second || c.AllowedOrigins != nil ||
		c.Database.URL != "postgres://postgres@localhost:5432/orderdb?sslmode=disable" {
		t.Errorf("defaults = %+v", c)
	}
}

func TestPositiveDurations(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ORDER_SAGA_TIMEOUT", "ORDER_CREATE_TIMEOUT"} {
		for _, tt := range []struct {
			value   string
			want    time.Duration
			wantErr bool
		}{
			{"3s", 3 * time.Second, false},
			{"1h30m", 90 * time.Minute, false},
			{"0s", 0, true},
			{"-1m", 0, true},
			{"ten minutes", 0, true},
		} {
			c, err := config.Load[Config](environ(map[string]string{name: tt.value}))
			if (err != nil) != tt.wantErr {
				t.Errorf("%s=%q: error %v, want error %v", name, tt.value, err, tt.wantErr)
				continue
			}
			if err != nil {
				if !strings.Contains(err.Error(), name+": ") {
					t.Errorf("%s=%q: error %v does not name the variable", name, tt.value, err)
				}
				continue
			}
			if got := map[string]time.Duration{"ORDER_SAGA_TIMEOUT": c.SagaTimeout, "ORDER_CREATE_TIMEOUT": c.CreateTimeout}[name]; got != tt.want {
				t.Errorf("%s=%q: %s, want %s", name, tt.value, got, tt.want)
			}
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
		cfg, err := config.Load[Config](environ(map[string]string{"ORDER_CORS_ALLOWED_ORIGINS": value}))
		if err != nil {
			t.Errorf("%q: %v", value, err)
			continue
		}
		if got := cfg.AllowedOrigins.String(); got != want {
			t.Errorf("%q: origins %q, want %q", value, got, want)
		}
	}
	for _, bad := range []string{"*", "null", "shop.example.com", "ftp://shop.example.com", "https://*.example.com",
		"https://shop.example.com/path", "https://u:p@shop.example.com", "https://shop.example.com?x=1", "https://shop.example.com:99999"} {
		_, err := config.Load[Config](environ(map[string]string{"ORDER_CORS_ALLOWED_ORIGINS": "https://ok.example," + bad}))
		if err == nil || !strings.Contains(err.Error(), "ORDER_CORS_ALLOWED_ORIGINS: ") {
			t.Errorf("%q: error %v, want one naming ORDER_CORS_ALLOWED_ORIGINS", bad, err)
		}
	}
}

func TestSecurityIsChecked(t *testing.T) {
	t.Parallel()
	if _, err := config.Load[Config](environ(map[string]string{"TLS_CERT_FILE": "/tls/cert.pem"})); err == nil ||
		!strings.Contains(err.Error(), "TLS_KEY_FILE") {
		t.Errorf("a certificate without its key: %v", err)
	}
}
