// Package contract holds the released contract (released.binpb) that `make breaking` compares the
// protos against, and the test that proves the comparison refuses breaking changes.
package contract

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// bufBreakingFound is buf's exit code when it ran and found breaking changes; any other failure
// (a usage error, a missing file) is not a refusal.
const bufBreakingFound = 100

// breaking runs buf breaking on a copy of the module root with edit applied to one proto file,
// and returns the rules it reports broken, its output and its error.
func breaking(t *testing.T, file, old, new string) (rules []string, out string, err error) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "proto"), os.DirFS(filepath.Join(root, "proto"))); err != nil {
		t.Fatal(err)
	}
	buf, err := os.ReadFile(filepath.Join(root, "buf.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "buf.yaml"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	if file != "" {
		path := filepath.Join(dir, "proto", file)
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), old) {
			t.Fatalf("%s does not contain %q", file, old)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(src), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "tool", "-modfile="+filepath.Join(root, "tools", "go.mod"), "buf",
		"breaking", dir, "--against", filepath.Join(root, "contract", "released.binpb"), "--error-format=json")
	cmd.Dir = root
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var annotation struct {
			Type string `json:"type"`
		}
		if line != "" && json.Unmarshal([]byte(line), &annotation) == nil && annotation.Type != "" {
			rules = append(rules, annotation.Type)
		}
	}
	return rules, stdout.String() + stderr.String(), err
}

func TestCurrentProtosKeepTheReleasedContract(t *testing.T) {
	if _, out, err := breaking(t, "", "", ""); err != nil {
		t.Fatalf("the protos as committed break the released contract: %v\n%s", err, out)
	}
}

func TestBreakingChangesAreRefused(t *testing.T) {
	edits := []struct {
		name, file, old, new string
		rule                 string // one of the rules buf must report
	}{
		{"field number of an API message", "order/v1/order_service.proto", "string order_id = 1;\n}\n\nmessage GetOrderResponse", "string order_id = 9;\n}\n\nmessage GetOrderResponse", "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED"},
		{"field renamed in an event (JSON)", "payment/v1/events.proto", "int64 amount_minor = 5;", "int64 amount_cents = 5;", "FIELD_SAME_JSON_NAME"},
		{"field type in an event (wire)", "shipping/v1/events.proto", "int64 freight_minor = 6;", "string freight_minor = 6;", "FIELD_WIRE_JSON_COMPATIBLE_TYPE"},
		{"enum value removed", "order/v1/order.proto", "  ORDER_STATUS_CANCELLED = 8;\n", "", "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED"},
		{"rpc removed", "order/v1/order_service.proto", "  rpc ListOrders(ListOrdersRequest) returns (ListOrdersResponse);\n", "", "RPC_NO_DELETE"},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			rules, out, err := breaking(t, e.file, e.old, e.new)
			if err == nil {
				t.Fatalf("buf breaking accepted a breaking change:\n%s", out)
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != bufBreakingFound {
				t.Fatalf("buf breaking did not report breaking changes (%v): it failed otherwise:\n%s", err, out)
			}
			if !slices.Contains(rules, e.rule) {
				t.Fatalf("buf breaking reported %v, not %s:\n%s", rules, e.rule, out)
			}
		})
	}
}
