package broker

import (
	"context"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"time"
)

// WatchDeadLetters publishes the depth of the dead-letter queues of subs as the
// ordersaga_dead_letter_depth gauge, every interval until ctx ends, so that an operator can alert
// on a dead letter without polling the broker.
func (c *Conn) WatchDeadLetters(ctx context.Context, subs []catalog.Subscription, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.measureDeadLetters(ctx, subs)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *Conn) measureDeadLetters(ctx context.Context, subs []catalog.Subscription) {
	if !c.Connected() {
		return
	}
	ch, err := c.Channel(ctx)
	if err != nil {
		return
	}
	defer ch.Close()
	for _, s := range subs {
		// A passive declare of a missing queue closes the channel; the topology declares them all.
		q, err := ch.QueueDeclarePassive(s.DeadLetterQueue(), true, false, false, false, nil)
		if err != nil {
			c.log.WarnContext(ctx, "dead-letter depth unavailable", "queue", s.DeadLetterQueue(), "err", err)
			return
		}
		deadLetterDepth.WithLabelValues(s.DeadLetterQueue()).Set(float64(q.Messages))
	}
}
