package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Load reads a binary's configuration T from getenv (os.Getenv in a main) with caarlos0/env,
// puts the password files' passwords into their URLs, and runs T's Validate when it has one.
// An empty variable counts as unset: its default applies. Every error names its variable.
func Load[T any](getenv func(string) string) (T, error) {
	var cfg T
	environment, err := read[T](getenv)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := withPasswordFiles(environment); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environment}); err != nil {
		return cfg, fmt.Errorf("config: %w", byVariable[T](environment, err))
	}
	if v, ok := any(cfg).(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
	}
	return cfg, nil
}

// Var is an environment variable that a configuration reads.
type Var struct {
	Name     string `json:"name"`
	Default  string `json:"default,omitempty"`
	Required bool   `json:"required,omitempty"`
	Secret   bool   `json:"secret,omitempty"` // its value is masked when logged
}

// Vars lists the variables that T reads, in field order, as caarlos0/env finds them. A variable
// read from a file (the env tag's file option) or named *_TOKEN is a secret.
func Vars[T any]() ([]Var, error) {
	params, err := env.GetFieldParams(new(T))
	if err != nil {
		return nil, err
	}
	vars := make([]Var, len(params))
	for i, p := range params {
		vars[i] = Var{Name: p.Key, Default: p.DefaultValue, Required: p.Required,
			Secret: p.LoadFile || strings.HasSuffix(p.Key, "_TOKEN")}
		if p.OwnKey == databaseURL && !p.HasDefaultValue {
			vars[i].Default = databaseDefault(strings.TrimSuffix(p.Key, p.OwnKey))
		}
	}
	return vars, nil
}

// databaseURL is the variable of a Database's URL, under its prefix.
const databaseURL = "DATABASE_URL"

// databaseDefault is the URL of the database named after prefix ("ORDER_": orderdb) on the
// local server, as DESIGN.md gives every service's default.
func databaseDefault(prefix string) string {
	name := strings.ToLower(strings.TrimSuffix(prefix, "_"))
	if name == "" {
		return ""
	}
	return "postgres://postgres@localhost:5432/" + name + "db?sslmode=disable"
}

// read returns the variables of T from getenv, the unset ones at their defaults.
func read[T any](getenv func(string) string) (map[string]string, error) {
	vars, err := Vars[T]()
	if err != nil {
		return nil, err
	}
	environment := make(map[string]string, len(vars))
	for _, v := range vars {
		if s := getenv(v.Name); s != "" {
			environment[v.Name] = s
		} else if v.Default != "" {
			environment[v.Name] = v.Default
		}
	}
	return environment, nil
}

// withPasswordFiles puts the password held by the file that each X_PASSWORD_FILE names into
// the URLs of X_URL (AMQP_PASSWORD_FILE into AMQP_URL, ORDER_DATABASE_PASSWORD_FILE into
// ORDER_DATABASE_URL).
func withPasswordFiles(environment map[string]string) error {
	var errs []error
	for key, file := range environment {
		if base, ok := strings.CutSuffix(key, "_PASSWORD_FILE"); ok {
			urls, err := withPasswordFile(key, environment[base+"_URL"], file)
			environment[base+"_URL"] = urls
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// byVariable restates env's parse errors, which name Go fields, by the variable that was wrong:
// the ones that fail when read alone, every other variable unset.
func byVariable[T any](environment map[string]string, err error) error {
	vars, _ := Vars[T]()
	var errs []error
	for _, v := range vars {
		value, ok := environment[v.Name]
		if !ok || value == v.Default {
			continue
		}
		var one T
		err := env.ParseWithOptions(&one, env.Options{Environment: map[string]string{v.Name: value}})
		var pe env.ParseError
		if errors.As(err, &pe) {
			errs = append(errs, fmt.Errorf("%s: %s", v.Name, maskURL(pe.Err.Error())))
		} else if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s", v.Name, maskURL(err.Error())))
		}
	}
	if len(errs) == 0 {
		return errors.New(maskURL(err.Error()))
	}
	return errors.Join(errs...)
}

// LogValue is T's variables as getenv sets them or as they default, by name, with secrets
// masked: the whole value of a variable that is a secret, and the password of any URL or libpq
// connection string.
func LogValue[T any](getenv func(string) string) slog.Value {
	vars, err := Vars[T]()
	if err != nil {
		return slog.StringValue(err.Error())
	}
	attrs := make([]slog.Attr, len(vars))
	for i, v := range vars {
		s := getenv(v.Name)
		if s == "" {
			s = v.Default
		}
		if v.Secret && s != "" {
			s = masked
		}
		attrs[i] = slog.String(v.Name, maskURL(s))
	}
	return slog.GroupValue(attrs...)
}

// Flags: what every binary answers about its configuration instead of running.
const (
	// FlagVars lists the variables the binary reads, one JSON object (Var) a line.
	FlagVars = "-config-vars"
	// FlagCheck reads the configuration from the environment as the binary would at start,
	// and exits 0, or 1 with the errors, without starting.
	FlagCheck = "-check-config"
)

// Inspect answers FlagVars or FlagCheck about T when args is one of them. It reports whether it
// did, and the exit status.
func Inspect[T any](args []string, getenv func(string) string, stdout, stderr io.Writer) (status int, done bool) {
	if len(args) != 1 {
		return 0, false
	}
	switch "-" + strings.TrimLeft(args[0], "-") { // -flag or --flag, as package flag takes them
	case FlagVars:
		vars, err := Vars[T]()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1, true
		}
		enc := json.NewEncoder(stdout)
		for _, v := range vars {
			if err := enc.Encode(v); err != nil {
				return 1, true
			}
		}
		return 0, true
	case FlagCheck:
		if _, err := Load[T](getenv); err != nil {
			fmt.Fprintln(stderr, err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// ReadVars reads what FlagVars prints.
func ReadVars(r io.Reader) ([]Var, error) {
	var vars []Var
	dec := json.NewDecoder(r)
	for dec.More() {
		var v Var
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		vars = append(vars, v)
	}
	return vars, nil
}
