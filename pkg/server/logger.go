package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ordersaga/ordersaga/pkg/config"
)

// Logger returns the service's logger on stdout, at cfg's level, with every line carrying the
// service's name and, when written inside a span, its trace_id and span_id. Lines are JSON for
// a collector, or text for a person (TextLines) when cfg.Format says so or, with auto, when
// stdout is a terminal.
func Logger(service string, cfg config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Level}
	if textOnStdout(cfg.Format) {
		return slog.New(TraceHandler{TextLines(os.Stdout, service, opts)})
	}
	return slog.New(TraceHandler{slog.NewJSONHandler(os.Stdout, opts)}).With("service", service)
}

// LogConfig logs cfg, the service's configuration, at start: at info level for a collector,
// which keeps it beside the service's other lines; at debug level in text, where a screenful
// of variables would bury what a person wants to read first.
func LogConfig(log *slog.Logger, format config.LogFormat, cfg any) {
	level := slog.LevelInfo
	if textOnStdout(format) {
		level = slog.LevelDebug
	}
	log.Log(context.Background(), level, "configuration", "config", cfg)
}

func textOnStdout(f config.LogFormat) bool {
	switch f {
	case config.LogText:
		return true
	case config.LogJSON:
		return false
	}
	fi, err := os.Stdout.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// TextLines returns a handler that writes one line of text per record, the service first so
// that the lines of several services in one terminal tell apart at a glance:
//
//	order     19:40:01.123 INFO  serving server=rest addr=[::]:3001 tls=false
func TextLines(w io.Writer, service string, opts *slog.HandlerOptions) slog.Handler {
	s := &textSink{out: w, prefix: []byte(service + "          ")[:max(len(service), 9)+1]}
	// The attributes are rendered by slog's own text handler into the sink's buffer, time,
	// level and message left out: they lead the line instead.
	inner := slog.NewTextHandler(&s.buf, &slog.HandlerOptions{
		Level:     opts.Level,
		AddSource: opts.AddSource,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
				return slog.Attr{}
			}
			if opts.ReplaceAttr != nil {
				return opts.ReplaceAttr(groups, a)
			}
			return a
		},
	})
	return textHandler{sink: s, inner: inner}
}

// textSink is shared by a handler and those derived from it (WithAttrs, WithGroup).
type textSink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	out    io.Writer
	prefix []byte
}

type textHandler struct {
	sink  *textSink
	inner slog.Handler
}

func (h textHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h textHandler) Handle(ctx context.Context, r slog.Record) error {
	s := h.sink
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	attrs := bytes.TrimRight(s.buf.Bytes(), "\n")
	line := make([]byte, 0, len(s.prefix)+len(r.Message)+len(attrs)+24)
	line = append(line, s.prefix...)
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	line = t.AppendFormat(line, "15:04:05.000")
	line = append(line, ' ')
	level := r.Level.String()
	line = append(line, level...)
	for range max(6-len(level), 1) {
		line = append(line, ' ')
	}
	line = append(line, r.Message...)
	if len(attrs) > 0 {
		line = append(line, ' ')
		line = append(line, attrs...)
	}
	line = append(line, '\n')
	_, err := s.out.Write(line)
	return err
}

func (h textHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return textHandler{sink: h.sink, inner: h.inner.WithAttrs(attrs)}
}

func (h textHandler) WithGroup(name string) slog.Handler {
	return textHandler{sink: h.sink, inner: h.inner.WithGroup(name)}
}

// TraceHandler adds the trace_id and span_id of the span in a record's context, if any.
type TraceHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h TraceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return TraceHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h TraceHandler) WithGroup(name string) slog.Handler {
	return TraceHandler{h.Handler.WithGroup(name)}
}
