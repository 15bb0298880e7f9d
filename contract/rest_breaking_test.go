package contract

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// oasdiffBreaking runs what make breaking-rest runs, on the generated document with edit
// applied (old replaced by new), and returns oasdiff's output and error.
func oasdiffBreaking(t *testing.T, old, new string) (string, error) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "gen", "openapi", "ordersaga.openapi3.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), old) {
		t.Fatalf("the document holds no %q to change", old)
	}
	edited := filepath.Join(t.TempDir(), "edited.openapi3.json")
	if err := os.WriteFile(edited, []byte(strings.ReplaceAll(string(doc), old, new)), 0o644); err != nil {
		t.Fatal(err)
	}
	accepted := filepath.Join(root, "contract", "rest-breaking-accepted.txt")
	cmd := exec.Command("go", "tool", "-modfile="+filepath.Join(root, "tools", "go.mod"), "oasdiff", "breaking",
		"--fail-on", "ERR", "--format", "singleline", "--err-ignore", accepted, "--warn-ignore", accepted,
		filepath.Join(root, "contract", "released.openapi3.json"), edited)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestRESTBreakingChangesAreRefused proves that the REST gate refuses what buf breaking cannot
// see (a route renamed in the http-rule YAML) and what it can (a response field removed), and
// lets the current document through.
func TestRESTBreakingChangesAreRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs oasdiff")
	}
	if out, err := oasdiffBreaking(t, `"openapi"`, `"openapi"`); err != nil {
		t.Fatalf("the current document breaks the released one: %v\n%s", err, out)
	}
	for name, edit := range map[string][2]string{
		"route renamed":          {`"/v1/orders/{order_id}"`, `"/v1/order/{order_id}"`},
		"response field removed": {`"tracking_code": {`, `"tracking_code_v2": {`},
	} {
		out, err := oasdiffBreaking(t, edit[0], edit[1])
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "error") {
			t.Errorf("%s: oasdiff %v, want a refusal (exit 1)\n%s", name, err, out)
		}
	}
}
