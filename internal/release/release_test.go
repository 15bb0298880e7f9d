package release

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	const c1, c2 = "6ae25de57ce18cdc75d4933477659529b3a2b86c", "1a7179f0000000000000000000000000000000ff"
	tests := []struct {
		name     string
		in       string
		want     []Release
		previous int // 0: Previous fails
		err      bool
	}{
		{"one", "# c\n\n1 " + c1 + "\n", []Release{{1, c1}}, 1, false},
		{"pending last", "1 " + c1 + "\n2 pending main when it lands\n", []Release{{1, c1}, {2, ""}}, 1, false},
		{"two", "1 " + c1 + "\n2 " + c2 + " a note\n", []Release{{1, c1}, {2, c2}}, 2, false},
		{"only pending", "1 pending\n", []Release{{1, ""}}, 0, false},
		{"empty", "# nothing\n", nil, 0, true},
		{"short hash", "1 6ae25de\n", nil, 0, true},
		{"gap", "1 " + c1 + "\n3 " + c2 + "\n", nil, 0, true},
		{"after pending", "1 pending\n2 " + c2 + "\n", nil, 0, true},
		{"no commit", "1\n", nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(strings.NewReader(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("Parse: %v, want error %v", err, tt.err)
			}
			if tt.err {
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Parse: %v, want %v", got, tt.want)
			}
			prev, err := Previous(got)
			if tt.previous == 0 {
				if err == nil {
					t.Errorf("Previous: %v, want an error", prev)
				}
				return
			}
			if err != nil || prev.Number != tt.previous {
				t.Errorf("Previous: %v %v, want release %d", prev, err, tt.previous)
			}
		})
	}
}

func TestCheckMigration(t *testing.T) {
	t.Parallel()
	up := func(s string) string {
		return "-- +goose Up\n" + s + "\n-- +goose Down\nDROP TABLE x; ALTER TABLE y RENAME TO z;\n"
	}
	tests := []struct {
		name string
		sql  string
		bad  bool
	}{
		{"create table", up("CREATE TABLE t (id uuid PRIMARY KEY, n int NOT NULL);"), false},
		{"add nullable column", up("ALTER TABLE t ADD COLUMN c bytea;"), false},
		{"add required column with default", up("ALTER TABLE t ADD COLUMN v int NOT NULL DEFAULT 1;"), false},
		{"widen a check", up("ALTER TABLE t DROP CONSTRAINT t_check,\n    ADD CONSTRAINT t_check CHECK (s IN ('A', 'B'));"), false},
		{"drop a default", up("ALTER TABLE t ALTER COLUMN c DROP DEFAULT;"), false},
		{"drop not null", up("ALTER TABLE t ALTER COLUMN c DROP NOT NULL;"), false},
		{"index", up("DROP INDEX t_idx; CREATE INDEX CONCURRENTLY t2_idx ON t (c);"), false},
		{"only down is destructive", up("SELECT 1;"), false},
		{"function body", up("-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n-- +goose StatementEnd"), false},
		{"comment mentions drop", up("-- we never DROP COLUMN here\nSELECT 1;"), false},
		{"drop table", up("DROP TABLE t;"), true},
		{"drop table if exists", up("drop table if exists t;"), true},
		{"drop column", up("ALTER TABLE t DROP COLUMN c;"), true},
		{"drop column without the keyword", up("ALTER TABLE t ADD COLUMN d int, DROP c;"), true},
		{"rename column", up("ALTER TABLE t RENAME COLUMN c TO d;"), true},
		{"rename table", up("ALTER TABLE t RENAME TO u;"), true},
		{"column type", up("ALTER TABLE t ALTER COLUMN c TYPE bigint;"), true},
		{"column set data type", up("ALTER TABLE t ALTER c SET DATA TYPE text;"), true},
		{"enum type", up("ALTER TYPE status ADD VALUE 'X';"), true},
		{"set not null", up("ALTER TABLE t ALTER COLUMN c SET NOT NULL;"), true},
		{"add required column", up("ALTER TABLE t ADD COLUMN c int NOT NULL;"), true},
		{"drop a unique key", up("ALTER TABLE t ADD CONSTRAINT t_a_b_key UNIQUE (a, b), DROP CONSTRAINT t_b_key;"), true},
		{"drop a primary key", up("ALTER TABLE t DROP CONSTRAINT IF EXISTS t_pkey;"), true},
		{"drop a foreign key", up("ALTER TABLE t DROP CONSTRAINT t_a_fkey;"), false},
		{"contract step of the previous release", "-- contract: release 1 no longer reads c\n" + up("ALTER TABLE t DROP COLUMN c;"), false},
		{"contract step too early", "-- contract: release 2 no longer reads c\n" + up("ALTER TABLE t DROP COLUMN c;"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := CheckMigration(tt.sql, 1)
			if (len(got) > 0) != tt.bad {
				t.Errorf("CheckMigration = %q, want destructive %v", got, tt.bad)
			}
		})
	}
}
