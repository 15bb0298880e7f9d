package stack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binDir returns the directory holding the four service binaries and ordersctl:
// $ORDERSAGA_BIN_DIR when set (make test builds bin/ first), else a temporary directory they are
// built into once per process. RemoveBinaries deletes it.
func binDir() (string, error) {
	if d := os.Getenv("ORDERSAGA_BIN_DIR"); d != "" {
		d, err := filepath.Abs(d)
		if err != nil {
			return "", err
		}
		if err := checkBinaries(d); err != nil {
			return "", fmt.Errorf("ORDERSAGA_BIN_DIR: %w", err)
		}
		return d, nil
	}
	buildOnce.Do(func() { buildDir, buildErr = build() })
	return buildDir, buildErr
}

// checkBinaries reports a service binary missing from dir.
func checkBinaries(dir string) error {
	for _, svc := range Services {
		if _, err := os.Stat(filepath.Join(dir, svc)); err != nil {
			return err
		}
	}
	return nil
}

func build() (string, error) {
	// The module's directory, also from a module that requires it (deploy/k8s).
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/ordersaga/ordersaga").Output()
	root := strings.TrimSpace(string(out))
	if err != nil || root == "" {
		return "", fmt.Errorf("not inside the ordersaga module (go list -m: %v); set ORDERSAGA_BIN_DIR", err)
	}
	dir, err := os.MkdirTemp("", "ordersaga-bin-")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator), "./cmd/ordersctl"}
	for _, svc := range Services {
		args = append(args, "./services/"+svc+"/cmd/"+svc)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return dir, nil
}

// RemoveBinaries deletes the binaries built by this process, if any. Call it once every stack
// is stopped, e.g. at the end of TestMain.
func RemoveBinaries() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}
