package config_test

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ordersaga/ordersaga/pkg/config"
)

// docPath is the page whose configuration table lists every variable.
const docPath = "../../docs/operations.md"

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

// TestConfigurationDocTable holds the configuration table of docs/operations.md to the
// configuration structs: the same variables both ways, each with the same default and the same
// readers.
func TestConfigurationDocTable(t *testing.T) {
	t.Parallel()
	rows := docTable(t)
	for _, v := range config.Vars() {
		row, ok := rows[v.Name]
		if !ok {
			t.Errorf("docs/operations.md's configuration table lacks %s (default %q, read by %s)", v.Name, v.Default, strings.Join(v.Binaries, ", "))
			continue
		}
		delete(rows, v.Name)
		if row.def != v.Default {
			t.Errorf("docs/operations.md: %s defaults to %q, the struct to %q", v.Name, row.def, v.Default)
		}
		got, want := slices.Sorted(slices.Values(row.usedBy)), slices.Sorted(slices.Values(v.Binaries))
		if !slices.Equal(got, want) {
			t.Errorf("docs/operations.md: %s is used by %v, the structs say %v", v.Name, got, want)
		}
	}
	for name := range rows {
		t.Errorf("docs/operations.md lists %s, which no configuration struct reads", name)
	}
}
