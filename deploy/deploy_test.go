// Package deploy holds the Prometheus, Grafana and RabbitMQ files that docker-compose.yml mounts.
// Its tests check them with promtool and docker-compose (scripts/deploy-tools.sh installs both).
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	rulesFile     = "prometheus/rules/ordersaga.yml"
	dashboardFile = "grafana/dashboards/ordersaga.json"
	datasources   = "grafana/provisioning/datasources/ordersaga.yml"
)

// tool returns the path of a command the checks need, failing the test when it is missing:
// make test installs them. Under -short, which runs what needs nothing installed, the check
// is left to make test.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil && testing.Short() {
		t.Skipf("%s is not installed: make test runs this check (scripts/deploy-tools.sh installs it)", name)
	}
	if err != nil {
		t.Fatalf("%s is not installed: run scripts/deploy-tools.sh (make check-deploy does)", name)
	}
	return path
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, &out)
	}
	return out.String()
}

func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	run(t, "promtool", "check", "config", "prometheus/prometheus.yml")
	run(t, "promtool", "check", "rules", rulesFile)
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	run(t, "promtool", "test", "rules", "prometheus/tests/ordersaga.test.yml")

	// Every alert has a unit test.
	rules := read(t, rulesFile)
	tests := read(t, "prometheus/tests/ordersaga.test.yml")
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(rules, -1)
	if len(alerts) == 0 {
		t.Fatal("no alerts found in " + rulesFile)
	}
	for _, a := range alerts {
		if !strings.Contains(tests, "alertname: "+a[1]+"\n") {
			t.Errorf("alert %s has no test in prometheus/tests/ordersaga.test.yml", a[1])
		}
	}
}

func TestCompose(t *testing.T) {
	t.Parallel()
	run(t, "docker-compose", "-f", "../docker-compose.yml", "config", "-q")
	services := strings.Fields(run(t, "docker-compose", "-f", "../docker-compose.yml", "config", "--services"))
	for _, want := range []string{"rabbitmq", "prometheus", "grafana", "jaeger", "order", "payment", "inventory", "shipping"} {
		if !slices.Contains(services, want) {
			t.Errorf("docker-compose.yml has no service %s (has %v)", want, services)
		}
	}
}

// panel is the part of a Grafana panel the checks read; rows nest panels.
type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type query struct {
	name string // dashboard:panel_<id>:<refId>, a valid recording rule name
	where,
	expr string
}

// TestDashboard checks that the dashboard is valid JSON, that its panels use a provisioned data
// source, that every query parses as PromQL (promtool parses them as recording rules) and that it
// queries only metrics the rules file lists or records.
func TestDashboard(t *testing.T) {
	t.Parallel()
	var dash struct {
		UID    string  `json:"uid"`
		Title  string  `json:"title"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal([]byte(read(t, dashboardFile)), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard without uid or title")
	}
	uids := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+uid: (\S+)`).FindAllStringSubmatch(read(t, datasources), -1) {
		uids[m[1]] = true
	}

	var queries []query
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || !uids[p.Datasource.UID] {
				t.Errorf("panel %q: data source is not one of %s", p.Title, datasources)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				queries = append(queries, query{
					name:  fmt.Sprintf("dashboard:panel_%d:%s", p.ID, q.RefID),
					where: fmt.Sprintf("panel %q query %s", p.Title, q.RefID),
					expr:  q.Expr,
				})
			}
		}
	}
	walk(dash.Panels)
	if len(queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}

	known := knownMetrics(t)
	for _, q := range queries {
		for _, m := range metricNames(grafanaVariables(q.expr)) {
			if !known[m] {
				t.Errorf("%s queries %s, which %s neither lists nor records: %s", q.where, m, rulesFile, q.expr)
			}
		}
	}

	// promtool parses each query with Prometheus' own parser.
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for _, q := range queries {
		expr, err := json.Marshal(grafanaVariables(q.expr)) // a JSON string is a YAML string
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      - record: %s\n        expr: %s\n", q.name, expr)
	}
	file := filepath.Join(t.TempDir(), "dashboard.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "promtool", "check", "rules", file)
}

// grafanaVariables replaces Grafana's interval variables with a duration, as Grafana does.
func grafanaVariables(expr string) string {
	return regexp.MustCompile(`\$\{?__(rate_interval|interval|range)\}?`).ReplaceAllString(expr, "5m")
}

// knownMetrics returns the metrics the rules file lists in its header (histograms with their
// _bucket, _sum and _count series) and the names it records.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rules := read(t, rulesFile)
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#\s+- ([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\S+)`).FindAllStringSubmatch(rules, -1) {
		known[m[1]] = true
		if m[2] == "histogram" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				known[m[1]+suffix] = true
			}
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*- record: (\S+)`).FindAllStringSubmatch(rules, -1) {
		known[m[1]] = true
	}
	if len(known) < 10 {
		t.Fatalf("%s lists only %d metrics: is its header comment intact?", rulesFile, len(known))
	}
	return known
}

var (
	strLit       = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	matchers     = regexp.MustCompile(`\{[^}]*\}`)
	ranges       = regexp.MustCompile(`\[[^\]]*\]`)
	grouping     = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identifier   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
	}
)

// metricNames returns the metric names a PromQL expression selects: identifiers outside strings,
// label matchers, ranges and grouping clauses that are neither functions nor keywords.
func metricNames(expr string) []string {
	expr = strLit.ReplaceAllString(expr, `""`)
	expr = matchers.ReplaceAllString(expr, " ")
	expr = ranges.ReplaceAllString(expr, " ")
	expr = grouping.ReplaceAllString(expr, " ")
	var out []string
	for _, m := range identifier.FindAllStringSubmatchIndex(expr, -1) {
		word := expr[m[0]:m[1]]
		if m[2] >= 0 { // a function call
			continue
		}
		if promKeywords[strings.ToLower(word)] || (m[0] > 0 && isDigit(expr[m[0]-1])) {
			continue // a keyword, or the exponent or unit of a number
		}
		out = append(out, word)
	}
	return out
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' || c == '.' }

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMetricNames(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`sum by (queue, le) (rate(a_bucket{x="y{z}"}[5m])) / on (queue) group_left b`: {"a_bucket", "b"},
		`count(up{job=~"a|b"} == 0) or vector(0)`:                                     {"up"},
		`max(x:y:z) > 1e3 and bool c offset 5m`:                                       {"x:y:z", "c"},
		`histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))`:    {"h_bucket"},
	} {
		if got := metricNames(grafanaVariables(expr)); !slices.Equal(got, want) {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}
