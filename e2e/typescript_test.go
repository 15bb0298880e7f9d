package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTypeScriptClient type-checks the TypeScript example (examples/typescript: a client
// generated from the OpenAPI 3 document by openapi-typescript, calling through openapi-fetch)
// with tsc --strict and runs it under Node against the stack: the README's REST flow, with the
// 409 of a reused request_id and the 400 naming the field.
func TestTypeScriptClient(t *testing.T) {
	t.Parallel()
	tsc := needFile(t, "examples/typescript/node_modules/.bin/tsc")
	dir := repoFile(t, "examples/typescript")
	// Compiled beside node_modules, so that Node finds the packages; removed afterwards.
	out, err := os.MkdirTemp(dir, ".e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })

	run := func(timeout time.Duration, env []string, name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	run(3*time.Minute, nil, tsc, "--strict", "--outDir", out)
	got := run(2*time.Minute, []string{"ORDERSAGA_REST_URL=http://" + sys.OrderHTTP}, "node", filepath.Join(out, "main.js"))
	t.Logf("node main.js:\n%s", got)
	for _, want := range []string{"created ", "got ", "listed ", "the same order", "409 request_id", "400 items"} {
		if !strings.Contains(got, want) {
			t.Errorf("the TypeScript client's output lacks %q", want)
		}
	}
}
