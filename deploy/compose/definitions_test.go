// Package compose holds the configuration of docker-compose.yml's broker and databases; its
// test checks the broker's users and permissions against the saga's topology.
package compose

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
)

type definitions struct {
	Users []struct {
		Name         string `json:"name"`
		PasswordHash string `json:"password_hash"`
		Algorithm    string `json:"hashing_algorithm"`
	} `json:"users"`
	Permissions []struct {
		User      string `json:"user"`
		VHost     string `json:"vhost"`
		Configure string `json:"configure"`
		Write     string `json:"write"`
		Read      string `json:"read"`
	} `json:"permissions"`
}

func load(t *testing.T) definitions {
	t.Helper()
	b, err := os.ReadFile("rabbitmq-definitions.json")
	if err != nil {
		t.Fatal(err)
	}
	var d definitions
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPasswords: every broker user's hash is of the password in its secret file (RabbitMQ's
// rabbit_password_hashing_sha256: base64 of a 4-byte salt and SHA-256 of salt + password).
func TestPasswords(t *testing.T) {
	for _, u := range load(t).Users {
		pw, err := os.ReadFile(filepath.Join("secrets", "rabbitmq_"+u.Name+"_password"))
		if err != nil {
			t.Fatalf("user %s: %v", u.Name, err)
		}
		raw, err := base64.StdEncoding.DecodeString(u.PasswordHash)
		if err != nil || len(raw) != 4+sha256.Size || u.Algorithm != "rabbit_password_hashing_sha256" {
			t.Fatalf("user %s: hash %q (%s) is not a salted SHA-256", u.Name, u.PasswordHash, u.Algorithm)
		}
		sum := sha256.Sum256(append(slices.Clone(raw[:4]), bytes.TrimRight(pw, "\r\n")...))
		if !bytes.Equal(sum[:], raw[4:]) {
			t.Errorf("user %s: the hash is not of secrets/rabbitmq_%s_password", u.Name, u.Name)
		}
	}
}

// TestPermissions: each service's user may do what the service does on the broker today —
// declare the saga's whole topology (every service declares all of it, so that none depends
// on another having started), bind, consume its queues and publish on its own exchange — and
// may not publish another service's events, or touch names outside the saga.
func TestPermissions(t *testing.T) {
	perms := map[string][3]*regexp.Regexp{}
	for _, p := range load(t).Permissions {
		if p.VHost != "/" {
			t.Errorf("user %s: vhost %q", p.User, p.VHost)
		}
		perms[p.User] = [3]*regexp.Regexp{regexp.MustCompile(p.Configure), regexp.MustCompile(p.Write), regexp.MustCompile(p.Read)}
	}
	const configure, write, read = 0, 1, 2
	var queues []string
	for _, s := range catalog.Subscriptions() {
		queues = append(queues, s.Queue(), s.DeadLetterQueue())
	}
	exchanges := append(catalog.Exchanges(), broker.DeadLetterExchange)
	for _, svc := range []string{catalog.Order, catalog.Payment, catalog.Inventory, catalog.Shipping} {
		p, ok := perms[svc]
		if !ok {
			t.Fatalf("no permissions for %s", svc)
		}
		must := func(op int, resource string, want bool) {
			t.Helper()
			if p[op].MatchString(resource) != want {
				t.Errorf("%s: %s on %q allowed = %v, want %v", svc, []string{"configure", "write", "read"}[op], resource, !want, want)
			}
		}
		// Declaring: configure on every exchange and queue; a queue with a dead-letter exchange
		// also needs read on the queue and write on the exchange. Binding: write on the queue,
		// read on the exchange.
		for _, x := range exchanges {
			must(configure, x, true)
			must(read, x, true)
		}
		for _, q := range queues {
			must(configure, q, true)
			must(write, q, true)
			must(read, q, true)
		}
		must(write, broker.DeadLetterExchange, true)
		// Publishing: its own exchange only.
		for _, x := range catalog.Exchanges() {
			must(write, x, x == svc+".exchange")
		}
		// Nothing outside the saga's names.
		for _, other := range []string{"", "amq.default", "amq.topic", "evil.queue", "order.exchange.x", "payment.order-created.dlq.x"} {
			for op := range 3 {
				must(op, other, false)
			}
		}
	}
	if admin, ok := perms["admin"]; !ok || !strings.Contains(admin[write].String(), ".*") {
		t.Error("no admin user for the management UI and ordersctl")
	}
}
