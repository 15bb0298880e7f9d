package stack

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ordersaga/ordersaga/pkg/config"
)

// ConfigVars returns the variables that binary (a service, as in Services, or "ordersctl")
// reads, as it lists them with config.FlagVars.
func ConfigVars(binary string) ([]config.Var, error) {
	out, err := runConfig(binary, config.FlagVars, nil)
	if err != nil {
		return nil, err
	}
	return config.ReadVars(bytes.NewReader(out))
}

// CheckConfig returns what binary refuses to start with in the environment env, and nothing
// else, as it reports it with config.FlagCheck.
func CheckConfig(binary string, env map[string]string) error {
	_, err := runConfig(binary, config.FlagCheck, env)
	return err
}

func runConfig(binary, flag string, env map[string]string) ([]byte, error) {
	dir, err := binDir()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(dir, binary), flag)
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && stderr.Len() > 0 {
		return out, errors.New(strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return out, fmt.Errorf("%s %s: %w", binary, flag, err)
	}
	return out, nil
}
