package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWithPasswordFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("s3cr/t@,x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := withPasswordFile("TEST_PASSWORD_FILE", "amqp://order@a:5672/,amqp://order:old@b:5672/", "")
	if err != nil || got != "amqp://order@a:5672/,amqp://order:old@b:5672/" {
		t.Fatalf("without the file: %q, %v", got, err)
	}
	got, err = withPasswordFile("TEST_PASSWORD_FILE", "amqp://order@a:5672/,amqp://order:old@b:5672/", file)
	if want := "amqp://order:s3cr%2Ft%40%2Cx@a:5672/,amqp://order:s3cr%2Ft%40%2Cx@b:5672/"; err != nil || got != want {
		t.Fatalf("got %q, %v, want %q", got, err, want)
	}
	got, err = withPasswordFile("TEST_PASSWORD_FILE", "postgres://order@db:5432/orderdb?sslmode=disable", file)
	if want := "postgres://order:s3cr%2Ft%40%2Cx@db:5432/orderdb?sslmode=disable"; err != nil || got != want {
		t.Fatalf("got %q, %v, want %q", got, err, want)
	}
	for _, urls := range []string{"amqp://a:5672/", "host=db user=order dbname=orderdb"} {
		if _, err := withPasswordFile("TEST_PASSWORD_FILE", urls, file); err == nil {
			t.Errorf("%q took a password", urls)
		}
	}
	if _, err := withPasswordFile("TEST_PASSWORD_FILE", "amqp://order@a/", filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file was not an error")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := withPasswordFile("TEST_PASSWORD_FILE", "amqp://order@a/", empty); err == nil {
		t.Error("an empty file was not an error")
	}
}

// TestLoadPasswordFiles: Load puts the files' passwords into the URLs the binary uses, and the
// logged configuration shows neither the passwords nor anything else of the files.
func TestLoadPasswordFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	env := map[string]string{
		"AMQP_URL":                     "amqp://order@rabbit:5672/",
		"AMQP_PASSWORD_FILE":           write("amqp", "broker-hunter2\n"),
		"ORDER_DATABASE_URL":           "postgres://order@db:5432/orderdb",
		"ORDER_DATABASE_PASSWORD_FILE": write("db", "db-hunter2"),
	}
	type service struct {
		Service
		Database Database `envPrefix:"ORDER_"`
	}
	o, err := Load[service](func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.Broker.AMQPURL != "amqp://order:broker-hunter2@rabbit:5672/" || o.Database.URL.String() != "postgres://order:db-hunter2@db:5432/orderdb" {
		t.Errorf("URLs %q, %q", o.Broker.AMQPURL, o.Database.URL)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configuration", "config", LogValue[service](func(k string) string { return env[k] }))
	if strings.Contains(buf.String(), "hunter2") {
		t.Errorf("logged a password: %s", buf.String())
	}
	env["ORDER_DATABASE_URL"] = "host=db user=order"
	if _, err := Load[service](func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "ORDER_DATABASE_PASSWORD_FILE") {
		t.Errorf("a keyword/value string with a password file: %v", err)
	}
}
