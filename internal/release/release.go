// Package release reads RELEASES, the record of which commit each release is, and builds a
// recorded release's services, so that tests can run the previous release beside the code
// under test.
package release

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Services are the commands a release is made of, under services/<name>/cmd/<name>.
var Services = []string{"order", "payment", "inventory", "shipping"}

// Release is one line of RELEASES.
type Release struct {
	Number int
	Commit string // the full commit hash; "" while the release is pending
}

// Pending says whether the release has no commit yet: it is being prepared on main.
func (r Release) Pending() bool { return r.Commit == "" }

func (r Release) String() string {
	if r.Pending() {
		return fmt.Sprintf("release %d (pending)", r.Number)
	}
	return fmt.Sprintf("release %d (%.7s)", r.Number, r.Commit)
}

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Parse reads RELEASES: "<number> <commit>|pending [note]" per line, numbers counting up from 1,
// "#" comments and blank lines ignored; only the last release may be pending.
func Parse(r io.Reader) ([]Release, error) {
	var out []Release
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: want a number and a commit, got %q", line, text)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n != len(out)+1 {
			return nil, fmt.Errorf("line %d: release number %q, want %d", line, f[0], len(out)+1)
		}
		if len(out) > 0 && out[len(out)-1].Pending() {
			return nil, fmt.Errorf("line %d: release %d follows a pending release", line, n)
		}
		rel := Release{Number: n}
		switch {
		case f[1] == "pending":
		case commitRE.MatchString(f[1]):
			rel.Commit = f[1]
		default:
			return nil, fmt.Errorf("line %d: %q is neither a full commit hash nor pending", line, f[1])
		}
		out = append(out, rel)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no release recorded")
	}
	return out, nil
}

// Load reads the RELEASES file at the root of the repository.
func Load(root string) ([]Release, error) {
	f, err := os.Open(filepath.Join(root, "RELEASES"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rs, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("RELEASES: %w", err)
	}
	return rs, nil
}

// Previous is the newest release with a commit: what production runs while the code under
// test is prepared, and what that code must upgrade from.
func Previous(rs []Release) (Release, error) {
	for i := len(rs) - 1; i >= 0; i-- {
		if !rs[i].Pending() {
			return rs[i], nil
		}
	}
	return Release{}, errors.New("no release with a commit")
}

// Root returns the repository's root: the nearest directory above the working directory that
// holds RELEASES.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "RELEASES")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("RELEASES not found above the working directory")
		}
		dir = parent
	}
}

// Build writes the release's four service binaries into dir: its tree is exported from the
// repository at root (git archive) into a temporary directory and built there with its own
// go.mod, so the module cache or proxy supplies the dependencies it pinned.
func Build(ctx context.Context, root string, r Release, dir string) error {
	if r.Pending() {
		return fmt.Errorf("%s has no commit to build", r)
	}
	src, err := os.MkdirTemp("", "ordersaga-release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	archive := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", r.Commit)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var archiveErr, untarErr strings.Builder
	archive.Stderr, untar.Stderr = &archiveErr, &untarErr
	if err := untar.Start(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return fmt.Errorf("git archive %s (a shallow clone lacks it: git fetch --unshallow): %w\n%s", r, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		return fmt.Errorf("untar %s: %w\n%s", r, err, untarErr.String())
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, svc := range Services {
		args = append(args, "./services/"+svc+"/cmd/"+svc)
	}
	build := exec.CommandContext(ctx, "go", args...)
	build.Dir = src
	// The release's own go.mod and go.sum decide its dependencies; a workspace or a -mod
	// setting of the caller's must not.
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", r, err, out)
	}
	return nil
}

// Binaries returns a directory holding the release's four service binaries, building them
// (Build) the first time into the user's cache directory, where later runs find them.
func Binaries(ctx context.Context, root string, r Release) (string, error) {
	if r.Pending() {
		return "", fmt.Errorf("%s has no commit to build", r)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "ordersaga", "releases", r.Commit)
	if complete(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), r.Commit+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := Build(ctx, root, r, tmp); err != nil {
		return "", err
	}
	// Renamed whole, so that a directory found is always complete; a concurrent build that
	// renamed first wins.
	if err := os.Rename(tmp, dir); err != nil && !complete(dir) {
		return "", err
	}
	return dir, nil
}

func complete(dir string) bool {
	for _, svc := range Services {
		if _, err := os.Stat(filepath.Join(dir, svc)); err != nil {
			return false
		}
	}
	return true
}
