package ops

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
)

func (c *cli) order(ctx context.Context, args []string) error {
	fs := newFlagSet("order", c.stderr)
	asJSON := fs.Bool("json", false, "machine-readable output")
	dlqMax := fs.Int("dlq-max", 1000, "look at no more than this many dead letters of each queue")
	ignoreDLQ := fs.Bool("ignore-dlq", false, "do not look into the dead-letter queues")
	pos, err := c.parse(fs, args, 1, "one order id")
	if err != nil {
		return err
	}
	id, err := uuid.Parse(pos[0])
	if err != nil {
		return fmt.Errorf("%w: order id %q is not a UUID", errUsage, pos[0])
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	dbs, closeAll, err := c.connectDatabases(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	v, err := LoadOrder(ctx, dbs, id.String())
	if err != nil {
		return err
	}
	if !*ignoreDLQ {
		conn, err := c.dial(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := FindDeadLetters(ctx, conn, v, *dlqMax); err != nil {
			return err
		}
	}
	if !v.Found() {
		return fmt.Errorf("order %s: %w in any database or dead-letter queue", v.OrderID, ErrOrderNotFound)
	}
	if *asJSON {
		return c.writeJSON(v)
	}
	return PrintOrder(c.stdout, v)
}

// PrintOrder writes v as one screen of text.
func PrintOrder(w io.Writer, v *OrderView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(indent, k, format string, args ...any) {
		fmt.Fprintf(tw, "%s%s\t%s\n", indent, k, fmt.Sprintf(format, args...))
	}
	sub := func(k, format string, args ...any) { line("  ", k, format, args...) }
	if o := v.Order; o != nil {
		line("", "order", "%s  %s", o.ID, o.Status)
		sub("customer", "%s", o.CustomerID)
		sub("payment method", "%s", o.PaymentMethod)
		sub("total", "%s", o.Total)
		for i, it := range o.Items {
			k := ""
			if i == 0 {
				k = "items"
			}
			sub(k, "%d × %s at %s", it.Quantity, it.ProductID, it.UnitPrice)
		}
		if o.CountryCode != "" {
			sub("ship to", "%s", o.CountryCode)
		}
		if o.TrackingCode != "" {
			sub("tracking code", "%s", o.TrackingCode)
		}
		if o.FailureReason != "" {
			sub("failure", "%s", o.FailureReason)
		}
		if o.RequestID != "" {
			sub("request id", "%s", o.RequestID)
		}
		sub("created", "%s (updated %s)", stamp(o.CreatedAt), stamp(o.UpdatedAt))
	} else {
		line("", "order", "%s  not in the order database", v.OrderID)
	}
	if len(v.History) == 0 {
		line("", "history", "none")
	} else {
		line("", "history", "")
		for _, h := range v.History {
			reason := ""
			if h.Reason != "" {
				reason = "  " + h.Reason
			}
			sub("", "%s  %s%s", stamp(h.ChangedAt), h.Status, reason)
		}
	}
	if p := v.Payment; p != nil {
		line("", "payment", "%s  %s  %s %s%s  (at %s)", p.ID, p.Status, p.Amount, p.Method, because(p.Reason), stamp(p.UpdatedAt))
	} else {
		line("", "payment", "none")
	}
	if r := v.Reservation; r != nil {
		items := make([]string, len(r.Items))
		for i, it := range r.Items {
			items[i] = fmt.Sprintf("%d × %s", it.Quantity, it.ProductID)
		}
		line("", "reservation", "%s  %s  %s  (at %s)", r.ID, r.Status, strings.Join(items, ", "), stamp(r.UpdatedAt))
	} else {
		line("", "reservation", "none")
	}
	if s := v.Shipment; s != nil {
		what := []string{s.ID, s.Status}
		if s.TrackingCode != "" {
			what = append(what, s.TrackingCode)
		}
		detail := "freight " + s.Freight
		if s.CountryCode != "" {
			detail += " to " + s.CountryCode
		}
		if s.EstimatedDelivery != nil {
			detail += ", delivery " + s.EstimatedDelivery.UTC().Format(time.DateOnly)
		}
		line("", "shipment", "%s  %s%s  (at %s)", strings.Join(what, "  "), detail, because(s.Reason), stamp(s.CreatedAt))
	} else {
		line("", "shipment", "none")
	}
	if len(v.Outbox) == 0 {
		line("", "outbox", "none pending")
	} else {
		line("", "outbox", "%d pending", len(v.Outbox))
		for _, r := range v.Outbox {
			sub(r.Service, "#%d %s %s, event %s, since %s, due %s", r.ID, r.RoutingKey, r.MessageType, r.EventID, stamp(r.CreatedAt), stamp(r.DueAt))
		}
	}
	switch scan := v.DeadLetterScan; {
	case scan == nil:
		line("", "dead letters", "not looked at")
	default:
		skipped := ""
		if scan.Skipped > 0 {
			skipped = fmt.Sprintf(", %d not looked at: raise -dlq-max", scan.Skipped)
		}
		if len(v.DeadLetters) == 0 {
			line("", "dead letters", "none (looked at %d in %d queues%s)", scan.Scanned, scan.Queues, skipped)
		} else {
			line("", "dead letters", "%d (looked at %d in %d queues%s)", len(v.DeadLetters), scan.Scanned, scan.Queues, skipped)
		}
		for _, dl := range v.DeadLetters {
			why := dl.Reason
			if why == "" && len(dl.Deaths) > 0 {
				why = dl.Deaths[0].Reason + " on " + dl.Deaths[0].Queue
			}
			sub("", "%s: %s %s, %d deliveries: %s", dl.Queue, dl.MessageID, dl.Type, dl.DeliveryCount, why)
		}
	}
	trace := v.TraceID
	if trace == "" {
		trace = "-"
	}
	line("", "trace", "%s", trace)
	return tw.Flush()
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func because(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}
