// Package contract holds the released contract (released.binpb) that `make breaking` compares the
// protos against, and the test that proves the comparison refuses breaking changes.
package contract

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// breaking runs buf breaking on a copy of the module root with edit applied to one proto file.
func breaking(t *testing.T, file, old, new string) (string, error) {
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
		"breaking", dir, "--against", filepath.Join(root, "contract", "released.binpb"))
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCurrentProtosKeepTheReleasedContract(t *testing.T) {
	if out, err := breaking(t, "", "", ""); err != nil {
		t.Fatalf("the protos as committed break the released contract: %v\n%s", err, out)
	}
}

func TestBreakingChangesAreRefused(t *testing.T) {
	edits := []struct {
		name, file, old, new string
	}{
		{"field number of an API message", "order/v1/order_service.proto", "string order_id = 1;\n}\n\nmessage GetOrderResponse", "string order_id = 9;\n}\n\nmessage GetOrderResponse"},
		{"field renamed in an event (JSON)", "payment/v1/events.proto", "int64 amount_minor = 5;", "int64 amount_cents = 5;"},
		{"field type in an event (wire)", "shipping/v1/events.proto", "int64 freight_minor = 6;", "string freight_minor = 6;"},
		{"enum value removed", "order/v1/order.proto", "  ORDER_STATUS_CANCELLED = 8;\n", ""},
		{"rpc removed", "order/v1/order_service.proto", "  rpc ListOrders(ListOrdersRequest) returns (ListOrdersResponse);\n", ""},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			out, err := breaking(t, e.file, e.old, e.new)
			if err == nil {
				t.Fatalf("buf breaking accepted a breaking change:\n%s", out)
			}
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatalf("buf breaking did not run: %v\n%s", err, out)
			}
		})
	}
}
