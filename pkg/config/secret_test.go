package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestURLWithPasswordFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("s3cr/t@\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := URLWithPasswordFile("amqp://order@a:5672/,amqp://order:old@b:5672/", "TEST_PASSWORD_FILE")
	if err != nil || got != "amqp://order@a:5672/,amqp://order:old@b:5672/" {
		t.Fatalf("without the variable: %q, %v", got, err)
	}
	t.Setenv("TEST_PASSWORD_FILE", file)
	got, err = URLWithPasswordFile("amqp://order@a:5672/,amqp://order:old@b:5672/", "TEST_PASSWORD_FILE")
	if want := "amqp://order:s3cr%2Ft%40@a:5672/,amqp://order:s3cr%2Ft%40@b:5672/"; err != nil || got != want {
		t.Fatalf("got %q, %v, want %q", got, err, want)
	}
	got, err = URLWithPasswordFile("postgres://order@db:5432/orderdb?sslmode=disable", "TEST_PASSWORD_FILE")
	if want := "postgres://order:s3cr%2Ft%40@db:5432/orderdb?sslmode=disable"; err != nil || got != want {
		t.Fatalf("got %q, %v, want %q", got, err, want)
	}
	if _, err := URLWithPasswordFile("amqp://a:5672/", "TEST_PASSWORD_FILE"); err == nil {
		t.Error("a URL without a user took a password")
	}
	t.Setenv("TEST_PASSWORD_FILE", filepath.Join(t.TempDir(), "missing"))
	if _, err := URLWithPasswordFile("amqp://order@a/", "TEST_PASSWORD_FILE"); err == nil {
		t.Error("a missing file was not an error")
	}
}
