package docs

import (
	"bufio"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// docPath is the page whose configuration table lists every variable.
const docPath = "operations.md"

// docRow is a row of the configuration table of docs/operations.md.
type docRow struct {
	def    string   // the first `quoted` word of the default column, "" for none
	usedBy []string // "all" stands for the four services
}

var backticked = regexp.MustCompile("`([^`]*)`")

// docTable parses the table under "## Configuration" in docs/operations.md.
func docTable(t *testing.T) map[string]docRow {
	t.Helper()
	f, err := os.Open(docPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]docRow{}
	section, header := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "## ") {
			section = line == "## Configuration"
			continue
		}
		if !section || !strings.HasPrefix(line, "|") {
			if section && header && line != "" {
				break // the first table of the section has ended
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if !header {
			if !slices.Equal(cells, []string{"variable", "default", "used by"}) {
				t.Fatalf("configuration table header = %q", cells)
			}
			header = true
			continue
		}
		if strings.Trim(strings.Join(cells, ""), "-: ") == "" {
			continue // the separator row
		}
		if len(cells) != 3 {
			t.Fatalf("configuration row %q has %d cells", line, len(cells))
		}
		name := backticked.FindStringSubmatch(cells[0])
		if name == nil {
			t.Fatalf("configuration row %q: the variable is not `quoted`", line)
		}
		var row docRow
		if d := backticked.FindStringSubmatch(cells[1]); d != nil && strings.Index(cells[1], "`") == 0 {
			row.def = d[1]
		}
		for b := range strings.SplitSeq(cells[2], ",") {
			b = strings.TrimSpace(b)
			if b == "all" {
				row.usedBy = append(row.usedBy, "order", "payment", "inventory", "shipping")
				continue
			}
			row.usedBy = append(row.usedBy, b)
		}
		if _, dup := rows[name[1]]; dup {
			t.Errorf("docs/operations.md lists %s twice", name[1])
		}
		rows[name[1]] = row
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("docs/operations.md has no configuration table")
	}
	return rows
}

func TestMain(m *testing.M) {
	code := m.Run()
	stack.RemoveBinaries()
	os.Exit(code)
}

// binaries are the programs that read configuration, as the table's "used by" names them.
var binaries = append(slices.Clone(stack.Services), "ordersctl")

// TestConfigurationDocTable holds the configuration table of docs/operations.md to what the
// binaries read, as they list it themselves (-config-vars): the same variables both ways, each
// with the same default and the same readers. Each binary starts with its defaults.
func TestConfigurationDocTable(t *testing.T) {
	t.Parallel()
	rows := docTable(t)
	type read struct {
		def string
		by  []string
	}
	vars := map[string]*read{}
	for _, b := range binaries {
		list, err := stack.ConfigVars(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		for _, v := range list {
			if vars[v.Name] == nil {
				vars[v.Name] = &read{def: v.Default}
			} else if vars[v.Name].def != v.Default {
				t.Errorf("%s: %s defaults to %q, another binary to %q", b, v.Name, v.Default, vars[v.Name].def)
			}
			vars[v.Name].by = append(vars[v.Name].by, b)
		}
		if err := stack.CheckConfig(b, nil); err != nil {
			t.Errorf("%s does not start with its defaults: %v", b, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		v := vars[name]
		row, ok := rows[name]
		if !ok {
			t.Errorf("docs/operations.md's configuration table lacks %s (default %q, read by %s)", name, v.def, strings.Join(v.by, ", "))
			continue
		}
		delete(rows, name)
		if row.def != v.def {
			t.Errorf("docs/operations.md: %s defaults to %q, the binaries to %q", name, row.def, v.def)
		}
		got, want := slices.Sorted(slices.Values(row.usedBy)), slices.Sorted(slices.Values(v.by))
		if !slices.Equal(got, want) {
			t.Errorf("docs/operations.md: %s is used by %v, the binaries say %v", name, got, want)
		}
	}
	for name := range rows {
		t.Errorf("docs/operations.md lists %s, which no binary reads", name)
	}
}
