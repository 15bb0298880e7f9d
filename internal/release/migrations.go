package release

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MigrationGlobs are where the migrations live, relative to the repository's root: each
// service's own and those of the packages the services share (inbox, outbox).
var MigrationGlobs = []string{
	"services/*/internal/postgres/migrations/*.sql",
	"pkg/*/migrations/*.sql",
}

// Statements and ALTER TABLE actions that break the previous release while it still runs on
// the migrated database: it reads or writes a table or column that is gone or renamed, sends
// values of a type that changed, or inserts rows without a value that is now required.
var (
	dropTable   = regexp.MustCompile(`\bDROP\s+TABLE\b`)
	rename      = regexp.MustCompile(`\bRENAME\b`)
	alterType   = regexp.MustCompile(`\bALTER\s+TYPE\b`)
	alterTable  = regexp.MustCompile(`^ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?(ONLY\s+)?\S+\s+`)
	dropAction  = regexp.MustCompile(`^DROP\s+`)
	notColumn   = regexp.MustCompile(`^DROP\s+(CONSTRAINT|DEFAULT|NOT\s+NULL|IDENTITY|EXPRESSION)\b`)
	columnType  = regexp.MustCompile(`^ALTER\s+(COLUMN\s+)?\S+\s+(SET\s+DATA\s+)?TYPE\b`)
	setNotNull  = regexp.MustCompile(`\bSET\s+NOT\s+NULL\b`)
	addColumn   = regexp.MustCompile(`^ADD\s+(COLUMN\s+)?`)
	addNotCol   = regexp.MustCompile(`^ADD\s+(CONSTRAINT|PRIMARY|UNIQUE|CHECK|FOREIGN|EXCLUDE)\b`)
	notNull     = regexp.MustCompile(`\bNOT\s+NULL\b`)
	withDefault = regexp.MustCompile(`\bDEFAULT\b`)
	// PostgreSQL names a unique or primary key <table>_<columns>_key or <table>_pkey: the
	// previous release's INSERT … ON CONFLICT (columns) fails once it is gone.
	dropKey = regexp.MustCompile(`^DROP\s+CONSTRAINT\s+(IF\s+EXISTS\s+)?"?\w+_(P)?KEY"?\s*$`)
)

// contractRE marks a contract step: "-- contract: release N" says that release N and every later
// one no longer use what the migration removes.
var contractRE = regexp.MustCompile(`(?m)^--\s*contract:\s*release\s+(\d+)\b`)

// CheckMigration returns the destructive statements in the Up section of a migration added
// since the previous release (number previous): none is allowed unless the migration is a
// contract step whose release is previous or older, so that no replica still running beside
// the new release uses what it removes.
func CheckMigration(sql string, previous int) []string {
	if m := contractRE.FindStringSubmatch(sql); m != nil {
		n, _ := strconv.Atoi(m[1])
		if n <= previous {
			return nil
		}
		return []string{fmt.Sprintf("contract step for release %d, but the previous release, %d, still runs beside it: it may land once release %d is the previous one", n, previous, n)}
	}
	var found []string
	for _, stmt := range statements(upSection(sql)) {
		if what := destructive(stmt); what != "" {
			found = append(found, what+": "+stmt)
		}
	}
	return found
}

// destructive names what in stmt would break the previous release, or returns "".
func destructive(stmt string) string {
	switch {
	case dropTable.MatchString(stmt):
		return "DROP TABLE"
	case rename.MatchString(stmt):
		return "RENAME"
	case alterType.MatchString(stmt):
		return "ALTER TYPE"
	}
	loc := alterTable.FindStringIndex(stmt)
	if loc == nil {
		return ""
	}
	for _, action := range splitTopLevel(stmt[loc[1]:]) {
		action = strings.TrimSpace(action)
		switch {
		case dropAction.MatchString(action) && !notColumn.MatchString(action):
			return "DROP COLUMN"
		case dropKey.MatchString(action):
			return "DROP CONSTRAINT of a unique key"
		case columnType.MatchString(action):
			return "ALTER COLUMN ... TYPE"
		case setNotNull.MatchString(action):
			return "SET NOT NULL"
		case addColumn.MatchString(action) && !addNotCol.MatchString(action) &&
			notNull.MatchString(action) && !withDefault.MatchString(action):
			return "ADD COLUMN ... NOT NULL without a DEFAULT"
		}
	}
	return ""
}

// upSection returns a goose migration's Up part in upper case, comments removed and
// whitespace collapsed.
func upSection(sql string) string {
	var b strings.Builder
	up := false
	for _, line := range strings.Split(sql, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "-- +goose Up"):
			up = true
			continue
		case strings.HasPrefix(t, "-- +goose Down"):
			up = false
			continue
		}
		if !up {
			continue
		}
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(line)
		b.WriteByte(' ')
	}
	return strings.Join(strings.Fields(strings.ToUpper(b.String())), " ")
}

// statements splits SQL at semicolons outside parentheses and dollar quotes.
func statements(sql string) []string {
	var out []string
	depth, dollar, start := 0, false, 0
	for i := 0; i < len(sql); i++ {
		switch {
		case strings.HasPrefix(sql[i:], "$$"):
			dollar = !dollar
			i++
		case dollar:
		case sql[i] == '(':
			depth++
		case sql[i] == ')':
			depth--
		case sql[i] == ';' && depth == 0:
			if s := strings.TrimSpace(sql[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(sql[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// splitTopLevel splits a statement at commas outside parentheses: the actions of one ALTER TABLE.
func splitTopLevel(stmt string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(stmt); i++ {
		switch stmt[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, stmt[start:i])
				start = i + 1
			}
		}
	}
	return append(out, stmt[start:])
}
