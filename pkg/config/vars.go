package config

import (
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// Binary is a program of the repository and the configuration it reads.
type Binary struct {
	Name   string // "order", "payment", "inventory", "shipping" or "ordersctl"
	Config any    // a pointer to its zero configuration struct
	load   func(getenv func(string) string) error
}

// Check loads the binary's configuration from getenv as the binary would, and reports what the
// binary would refuse to start with.
func (b Binary) Check(getenv func(string) string) error { return b.load(getenv) }

func binary[T any](name string) Binary {
	return Binary{Name: name, Config: new(T), load: func(getenv func(string) string) error {
		_, err := Load[T](getenv)
		return err
	}}
}

// Binaries returns every binary that reads configuration, the four services first.
func Binaries() []Binary {
	return []Binary{
		binary[Order]("order"),
		binary[Payment]("payment"),
		binary[Inventory]("inventory"),
		binary[Shipping]("shipping"),
		binary[Ordersctl]("ordersctl"),
	}
}

// Var is an environment variable that a configuration reads.
type Var struct {
	Name     string
	Default  string   // "" when it has none
	Secret   bool     // its value is masked when logged
	Binaries []string // who reads it, in the order of Binaries (Vars only)
}

// VarsOf lists the variables that cfg, a pointer to a configuration struct, reads, in field order.
func VarsOf(cfg any) []Var {
	var vars []Var
	walk(cfg, func(f field) {
		if f.env != "" {
			vars = append(vars, Var{Name: f.env, Default: f.def, Secret: f.secret})
		}
	})
	return vars
}

// Vars lists every variable that any binary reads, sorted by name, each with the binaries that
// read it.
func Vars() []Var {
	byName := map[string]*Var{}
	for _, b := range Binaries() {
		for _, v := range VarsOf(b.Config) {
			if byName[v.Name] == nil {
				byName[v.Name] = &v
			}
			byName[v.Name].Binaries = append(byName[v.Name].Binaries, b.Name)
		}
	}
	vars := make([]Var, 0, len(byName))
	for _, v := range byName {
		vars = append(vars, *v)
	}
	slices.SortFunc(vars, func(a, b Var) int { return strings.Compare(a.Name, b.Name) })
	return vars
}

// field is a field of a configuration struct: a part (a struct without env tag) or a variable.
type field struct {
	value  reflect.Value
	name   string // the Go field's name, "" for the struct itself
	env    string // the variable, "" for a part
	def    string
	secret bool
}

// walk calls fn for cfg itself and then, depth first in field order, for every part and variable
// of cfg, which points to a configuration struct. It reads the env tags the way env does: the
// tests hold it to env.GetFieldParams.
func walk(cfg any, fn func(field)) {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("config: %T is not a pointer to a struct", cfg))
	}
	var visit func(name string, v reflect.Value)
	visit = func(name string, v reflect.Value) {
		fn(field{value: v, name: name})
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			if !sf.IsExported() {
				continue
			}
			tag, ok := sf.Tag.Lookup("env")
			if !ok {
				if sf.Type.Kind() == reflect.Struct {
					visit(sf.Name, v.Field(i))
				}
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			fn(field{
				value:  v.Field(i),
				name:   sf.Name,
				env:    name,
				def:    sf.Tag.Get("envDefault"),
				secret: slices.Contains(strings.Split(opts, ","), "file") || sf.Tag.Get("secret") == "true",
			})
		}
	}
	visit("", v.Elem())
}

// masked is what a secret is logged as.
const masked = "xxxxx"

// logValue is cfg as a group of its variables, by name, with secrets masked: the whole value of
// a variable that holds a file's content or is marked secret:"true", and the password of any
// URL or libpq connection string.
func logValue(cfg any) slog.Value {
	var attrs []slog.Attr
	walk(cfg, func(f field) {
		if f.env == "" {
			return
		}
		s := fmt.Sprint(f.value.Interface())
		switch {
		case f.secret && s != "":
			s = masked
		default:
			s = maskURL(s)
		}
		attrs = append(attrs, slog.String(f.env, s))
	})
	return slog.GroupValue(attrs...)
}

var (
	// scheme://user:password@ — the password stops at the last @ before the host.
	urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s,]*:)[^\s,/]*@`)
	// password=… as a libpq keyword (quoted or not) or a URL query parameter.
	keywordPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&,]+)`)
)

// maskURL replaces every password in s (URLs, lists of them, libpq strings, error messages
// quoting them) with xxxxx.
func maskURL(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}"+masked+"@")
	return keywordPassword.ReplaceAllString(s, "${1}"+masked)
}
