// Package docs holds the documentation past the README, and a test that keeps it whole: a front
// door that stays short and leads to every page, make targets that exist, links that resolve.
// What the pages claim is checked elsewhere: the examples by e2e (TestDocsExamplesWorkAsPrinted,
// TestDocsGoClient); the configuration table is held to what the binaries say they read by
// TestConfigurationDocTable (config_test.go).
package docs

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// readmeMaxLines keeps the README a front door of a few screens.
const readmeMaxLines = 250

// page is a Markdown file of the repository, by its path from the root.
type page struct {
	path     string
	text     string
	code     []string        // fenced sh blocks and inline code spans
	links    []string        // link targets, as written
	anchors  map[string]bool // the anchors its headings make
	numLines int
}

var (
	linkRe   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	inlineRe = regexp.MustCompile("`([^`]+)`")
	targetRe = regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):`)
	nameRe   = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// readPage reads a Markdown file and takes it apart.
func readPage(t *testing.T, root, path string) page {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	p := page{path: path, text: string(b), anchors: map[string]bool{}}
	var prose strings.Builder
	fence, block := "", []string(nil)
	sc := bufio.NewScanner(strings.NewReader(p.text))
	for sc.Scan() {
		line := sc.Text()
		p.numLines++
		if rest, ok := strings.CutPrefix(line, "```"); ok {
			switch {
			case fence == "":
				fence, block = rest, nil
			default:
				if fence == "sh" {
					p.code = append(p.code, strings.Join(block, "\n"))
				}
				fence = ""
			}
			continue
		}
		if fence != "" {
			block = append(block, line)
			continue
		}
		if h, ok := strings.CutPrefix(line, "#"); ok {
			p.anchors[anchor(strings.TrimLeft(h, "#"))] = true
		}
		prose.WriteString(line + "\n")
	}
	// A code span may continue on the next line of its paragraph.
	for _, para := range strings.Split(prose.String(), "\n\n") {
		for _, m := range inlineRe.FindAllStringSubmatch(strings.ReplaceAll(para, "\n", " "), -1) {
			p.code = append(p.code, m[1])
		}
	}
	for _, m := range linkRe.FindAllStringSubmatch(prose.String(), -1) {
		p.links = append(p.links, m[1])
	}
	return p
}

// anchor is the fragment a forge gives a heading: lower case, letters, digits, '-' and '_'
// kept, spaces made '-', the rest dropped.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// makeTargets returns the targets named after "make" in a piece of code: "make check-generate
// breaking" names two, "make soak SOAK_DURATION=5m" one.
func makeTargets(code string) []string {
	var targets []string
	for _, line := range strings.Split(code, "\n") {
		line, _, _ = strings.Cut(line, "#")
		fields := strings.Fields(line)
		for i, f := range fields {
			if f != "make" || (i > 0 && !slices.Contains([]string{"&&", "||", ";", "then", "do"}, fields[i-1])) {
				continue
			}
			for _, arg := range fields[i+1:] {
				if !nameRe.MatchString(arg) {
					break
				}
				targets = append(targets, arg)
			}
		}
	}
	return targets
}

// TestDocs keeps the README within a few screens and linked to every page of docs/, and every
// make target and relative link of the README and docs/ pointing at something that exists.
func TestDocs(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"README.md"}
	for _, f := range files {
		paths = append(paths, filepath.Join("docs", filepath.Base(f)))
	}
	pages := map[string]page{}
	for _, path := range paths {
		pages[path] = readPage(t, root, path)
	}

	readme := pages["README.md"]
	if readme.numLines > readmeMaxLines {
		t.Errorf("README.md has %d lines, more than %d: move the detail to docs/", readme.numLines, readmeMaxLines)
	}
	for _, path := range paths[1:] {
		if !slices.ContainsFunc(readme.links, func(l string) bool { return strings.Split(l, "#")[0] == path }) {
			t.Errorf("README.md does not link %s", path)
		}
	}

	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range targetRe.FindAllStringSubmatch(string(makefile), -1) {
		targets[m[1]] = true
	}

	for _, path := range paths {
		p := pages[path]
		for _, code := range p.code {
			for _, target := range makeTargets(code) {
				if !targets[target] {
					t.Errorf("%s: make %s: the Makefile has no such target", path, target)
				}
			}
		}
		for _, link := range p.links {
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(link, "#")
			target := path
			if file != "" {
				target = filepath.ToSlash(filepath.Join(filepath.Dir(path), file))
			}
			if _, err := os.Stat(filepath.Join(root, target)); err != nil {
				t.Errorf("%s links %s, which does not exist", path, link)
				continue
			}
			if frag == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			to, ok := pages[target]
			if !ok {
				to = readPage(t, root, target)
			}
			if !to.anchors[frag] {
				t.Errorf("%s links %s: %s has no heading #%s", path, link, target, frag)
			}
		}
	}
}
