package server

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

func TestTextLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	log := slog.New(TextLines(&out, "inventory", &slog.HandlerOptions{Level: slog.LevelInfo}))
	log.Debug("not shown")
	log.Info("serving", "server", "grpc", "addr", ":50052")
	log.With("order_id", "o-1").WithGroup("event").Warn("event rejected", "id", "e-1", "reason", "two words")
	log.Info("plain")

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^inventory \d\d:\d\d:\d\d\.\d{3} INFO  serving server=grpc addr=:50052$`),
		regexp.MustCompile(`^inventory \d\d:\d\d:\d\d\.\d{3} WARN  event rejected order_id=o-1 event\.id=e-1 event\.reason="two words"$`),
		regexp.MustCompile(`^inventory \d\d:\d\d:\d\d\.\d{3} INFO  plain$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want it to match %s", i, lines[i], re)
		}
	}

	out.Reset()
	slog.New(TextLines(&out, "order", &slog.HandlerOptions{})).Info("x")
	if !strings.HasPrefix(out.String(), "order     ") {
		t.Errorf("short names are padded so that the columns line up: %q", out.String())
	}
}
