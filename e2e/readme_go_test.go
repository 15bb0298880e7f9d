package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDocsGoClient builds the Go client example of docs/go-client.md in a scratch module that
// has only gen/ (through a replace directive), and runs it against the stack.
func TestDocsGoClient(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "go-client.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The first go block is the complete program.
	block := regexp.MustCompile("(?s)```go\n(.*?)```").FindStringSubmatch(string(doc))
	if block == nil {
		t.Fatal("no go block in docs/go-client.md")
	}
	dir := t.TempDir()
	gomod := "module example.com/readmeclient\n\ngo 1.26\n\n" +
		"require github.com/ordersaga/ordersaga/gen v0.0.0\n\n" +
		"replace github.com/ordersaga/ordersaga/gen => " + filepath.Join(root, "gen") + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "gen", "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"go.mod": gomod, "go.sum": string(sum), "main.go": block[1]} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	gocmd := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		// Only what gen/ brings: nothing is fetched, every module comes from gen's requirements.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	gocmd("mod", "tidy")
	gocmd("vet", ".")
	gocmd("build", "-o", "client", ".")

	run := exec.CommandContext(ctx, filepath.Join(dir, "client"))
	// The example dials localhost:50051; the stack listens elsewhere.
	src := strings.ReplaceAll(block[1], "localhost:50051", sys.OrderGRPC)
	if src == block[1] {
		t.Fatal("the example does not dial localhost:50051")
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	gocmd("build", "-o", "client", ".")
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("example: %v\n%s", err, out)
	}
	for _, want := range []string{"rejected: customer_id must be a UUID", "created ", "ORDER_STATUS_PENDING 99.80", "status ORDER_STATUS_CONFIRMED TRK-"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("example output lacks %q:\n%s", want, out)
		}
	}
}
