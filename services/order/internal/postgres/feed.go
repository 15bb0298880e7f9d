package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// StatusFeed tells watchers when an order's status changed, whichever replica changed it: one
// connection per process LISTENs on StatusChannel and fans the notifications out by order id.
type StatusFeed struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu      sync.Mutex
	subs    map[string]map[chan struct{}]struct{}
	stopped bool

	pendingMu sync.Mutex
	pending   []string      // changed orders not yet announced
	announce  chan struct{} // signals pending
}

// NewStatusFeed returns a feed on pool's database; Run makes it live.
func NewStatusFeed(pool *pgxpool.Pool, log *slog.Logger) *StatusFeed {
	return &StatusFeed{pool: pool, log: log, subs: map[string]map[chan struct{}]struct{}{}, announce: make(chan struct{}, 1)}
}

// Announce tells every replica's watchers that the orders ids changed. Call it after the commit
// that changed them. It never blocks: the ids are sent by Run, many at a time, in a NOTIFY of
// its own. A NOTIFY inside the data transaction would hold PostgreSQL's server-wide notify lock
// through that commit and serialize every status change.
func (f *StatusFeed) Announce(ids []string) {
	f.pendingMu.Lock()
	f.pending = append(f.pending, ids...)
	f.pendingMu.Unlock()
	signal(f.announce)
}

// announceLoop sends pending announcements until ctx ends. One that fails is dropped: watchers
// re-read their order on a poll as well.
func (f *StatusFeed) announceLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.announce:
		}
		f.pendingMu.Lock()
		ids := f.pending
		f.pending = nil
		f.pendingMu.Unlock()
		if _, err := f.pool.Exec(ctx, `SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id`, StatusChannel, ids); err != nil && ctx.Err() == nil {
			f.log.WarnContext(ctx, "order status announcement lost", "err", err, "orders", len(ids))
		}
	}
}

// Subscribe returns a channel that receives a signal when order id may have changed, and a
// function that ends the subscription. Signals coalesce: a reader re-reads the order on each.
// The channel is closed when the feed stops.
func (f *StatusFeed) Subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		close(ch)
		return ch, func() {}
	}
	if f.subs[id] == nil {
		f.subs[id] = map[chan struct{}]struct{}{}
	}
	f.subs[id][ch] = struct{}{}
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[id][ch]; !ok {
			return // closed by stop
		}
		delete(f.subs[id], ch)
		if len(f.subs[id]) == 0 {
			delete(f.subs, id)
		}
	}
}

// Run listens until ctx ends, reconnecting when the connection drops, then closes every
// subscription.
func (f *StatusFeed) Run(ctx context.Context) error {
	defer f.stop()
	go f.announceLoop(ctx)
	for ctx.Err() == nil {
		err := f.listen(ctx)
		if ctx.Err() != nil {
			break
		}
		f.log.WarnContext(ctx, "order status listener lost, reconnecting", "err", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	return nil
}

func (f *StatusFeed) listen(ctx context.Context) error {
	pc, err := f.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection stays in LISTEN state for good: it must never go back to the pool.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+StatusChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Changes made while no connection listened were missed: every watcher re-reads.
	f.wakeAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		f.wake(n.Payload)
	}
}

func (f *StatusFeed) wake(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs[id] {
		signal(ch)
	}
}

func (f *StatusFeed) wakeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, chans := range f.subs {
		for ch := range chans {
			signal(ch)
		}
	}
}

func (f *StatusFeed) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	for id, chans := range f.subs {
		for ch := range chans {
			close(ch)
		}
		delete(f.subs, id)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // a signal is pending already
	}
}
