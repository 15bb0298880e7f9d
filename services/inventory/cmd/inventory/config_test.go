package main

import (
	"strings"
	"testing"

	"github.com/ordersaga/ordersaga/pkg/config"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	c, err := config.Load[Config](func(string) string { return "" })
	if err != nil || c.GRPCAddr != ":50052" || c.OpsAddr != ":9103" || c.Security.TokensChecked() ||
		c.Database.URL != "postgres://postgres@localhost:5432/inventorydb?sslmode=disable" {
		t.Fatalf("defaults = %+v, %v", c, err)
	}
	issuerOnly := map[string]string{"AUTH_ISSUER": "https://issuer.test"}
	if _, err := config.Load[Config](func(k string) string { return issuerOnly[k] }); err == nil || !strings.Contains(err.Error(), "AUTH_JWKS_FILE") {
		t.Errorf("an issuer without keys: %v", err)
	}
}
