//go:build upgrade

// Run by make test-upgrade (in CI, .ci/run), not by make test: it needs the git history back to
// the previous release, which a shallow clone lacks.

package release

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMigrationsExpandOnly holds the repository's migrations to the expand/contract rule
// (docs/upgrades.md) against the previous release in RELEASES: a migration it shipped is never
// changed (goose would not run it again), and one added since removes nothing that release
// uses, unless it is a contract step of that release or an older one.
func TestMigrationsExpandOnly(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", root, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not a git checkout: the previous release's migrations cannot be read")
	}
	rs, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := Previous(rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", root, "cat-file", "-e", prev.Commit+"^{commit}").Run(); err != nil {
		t.Fatalf("%s is not in this clone (a shallow one? git fetch --unshallow): %v", prev, err)
	}
	var files []string
	for _, g := range MigrationGlobs {
		m, err := filepath.Glob(filepath.Join(root, g))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no migrations found")
	}
	added := 0
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		rel = filepath.ToSlash(rel)
		now, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		was, err := exec.Command("git", "-C", root, "show", prev.Commit+":"+rel).Output()
		if err == nil {
			if !bytes.Equal(was, now) {
				t.Errorf("%s changed since %s shipped it: add a migration instead", rel, prev)
			}
			continue
		}
		added++
		for _, d := range CheckMigration(string(now), prev.Number) {
			t.Errorf("%s (added since %s) would break %s running beside it: %s", rel, prev, prev, d)
		}
	}
	t.Logf("%d migrations, %d added since %s", len(files), added, prev)
}
