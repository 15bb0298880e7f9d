package postgres

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// StatusChannel is the NOTIFY channel that carries every order status change, as JSON.
const StatusChannel = "order_status"

// StatusFeed tells watchers what changed in an order, whichever replica changed it. Changes
// this process made reach its watchers at once, from memory; the other replicas learn them
// through one NOTIFY per batch, which one LISTEN connection per process fans out by order id.
type StatusFeed struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu      sync.Mutex
	subs    map[string]map[*Subscription]struct{}
	stopped bool
	// Orders this process created lately, kept up to date by the changes the feed sees, so
	// that a watch right after CreateOrder needs no read. Two generations, the older dropped
	// at each rotation: entries live between one and two rotations.
	recent, older map[string]*order.Order
	rotated       time.Time

	// self starts every announcement this process sends: {"from":"<random id>", and the
	// change's JSON fields. Its listener skips them, its watchers having had them from memory;
	// other replicas read them as order.Update JSON (the field is unknown to them).
	self string

	pendingMu sync.Mutex
	pending   []order.Update // changes not yet sent to the other replicas
	announce  chan struct{}  // signals pending
}

// Subscription receives the changes of one order.
type Subscription struct {
	ready chan struct{} // signalled when changes or a resync are waiting

	mu      sync.Mutex
	updates []order.Update
	resync  bool // changes may have been missed: read the order again
	closed  bool
}

// Ready is signalled when Take has something; it is closed when the feed stops.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns the changes received since the last call, and whether the order must be read
// again because changes may have been missed.
func (s *Subscription) Take() (updates []order.Update, resync bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	updates, resync = s.updates, s.resync
	s.updates, s.resync = nil, false
	return updates, resync
}

func (s *Subscription) deliver(u *order.Update) {
	s.mu.Lock()
	if u == nil {
		s.resync = true
	} else {
		s.updates = append(s.updates, *u)
	}
	s.mu.Unlock()
	signal(s.ready)
}

// NewStatusFeed returns a feed on pool's database; Run makes it live.
func NewStatusFeed(pool *pgxpool.Pool, log *slog.Logger) *StatusFeed {
	return &StatusFeed{pool: pool, log: log, subs: map[string]map[*Subscription]struct{}{}, announce: make(chan struct{}, 1),
		recent: map[string]*order.Order{}, older: map[string]*order.Order{}, rotated: time.Now(),
		self: `{"from":"` + rand.Text() + `",`}
}

// announceEvery is how long changes may wait to be sent to the other replicas together.
const announceEvery = 20 * time.Millisecond

// recentFor bounds how long a created order is kept for its watchers.
const recentFor = 10 * time.Second

// Created keeps a copy of an order this process has just stored, for its first watchers.
func (f *StatusFeed) Created(o *order.Order) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.rotated) > recentFor {
		f.older, f.recent, f.rotated = f.recent, make(map[string]*order.Order, len(f.recent)), now
	}
	f.recent[o.ID()] = o.Clone()
}

// follow applies a change to the kept copy of its order; a copy that cannot follow (a change
// missed, or arriving out of order) is dropped, and its watchers read the order. Called with
// mu held.
func (f *StatusFeed) follow(u *order.Update) {
	for _, m := range []map[string]*order.Order{f.recent, f.older} {
		// A change the copy has already (its version or an older one) changes nothing.
		if o, ok := m[u.OrderID]; ok && u.Version > o.Version() && !o.Follow(*u) {
			delete(m, u.OrderID)
		}
	}
}

func (f *StatusFeed) known(id string) *order.Order {
	if o, ok := f.recent[id]; ok {
		return o.Clone()
	}
	if o, ok := f.older[id]; ok {
		return o.Clone()
	}
	return nil
}

// Announce tells every replica's watchers about changes. Call it after the commit that made
// them. It never blocks: this process's watchers get them now, the other replicas' through a
// NOTIFY that Run sends, many changes at a time. A NOTIFY inside the data transaction would
// hold PostgreSQL's server-wide notify lock through that commit and serialize every status change.
func (f *StatusFeed) Announce(updates []order.Update) {
	f.dispatch(updates)
	f.pendingMu.Lock()
	f.pending = append(f.pending, updates...)
	f.pendingMu.Unlock()
	signal(f.announce)
}

func (f *StatusFeed) dispatch(updates []order.Update) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range updates {
		f.follow(&updates[i])
		for s := range f.subs[updates[i].OrderID] {
			s.deliver(&updates[i])
		}
	}
}

// announceLoop sends pending changes until ctx ends. Changes that fail to go out are dropped:
// the other replicas' watchers re-read their order on a poll as well.
func (f *StatusFeed) announceLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.announce:
		}
		// Gather what the next few milliseconds bring into the same NOTIFY statement: other
		// replicas' watchers learn a little later, this process's were told already.
		select {
		case <-ctx.Done():
			return
		case <-time.After(announceEvery):
		}
		f.pendingMu.Lock()
		updates := f.pending
		f.pending = nil
		f.pendingMu.Unlock()
		payloads := make([]string, 0, len(updates))
		for _, u := range updates {
			b, err := json.Marshal(u)
			if err != nil || len(b) > 7900 { // NOTIFY payloads stop at 8000 bytes
				b, _ = json.Marshal(order.Update{OrderID: u.OrderID}) // version 0: watchers re-read
			}
			payloads = append(payloads, f.self+string(b[1:]))
		}
		if _, err := f.pool.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, StatusChannel, payloads); err != nil && ctx.Err() == nil {
			f.log.WarnContext(ctx, "order status announcement lost", "err", err, "changes", len(updates))
		}
	}
}

// Subscribe returns a subscription to the changes of order id (canonical form), the order as
// the feed knows it when this process created it lately (nil otherwise), and a function that
// ends the subscription. Its Ready channel is closed when the feed stops.
func (f *StatusFeed) Subscribe(id string) (*Subscription, *order.Order, func()) {
	s := &Subscription{ready: make(chan struct{}, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		close(s.ready)
		return s, nil, func() {}
	}
	known := f.known(id)
	if f.subs[id] == nil {
		f.subs[id] = map[*Subscription]struct{}{}
	}
	f.subs[id][s] = struct{}{}
	return s, known, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[id][s]; !ok {
			return // closed by stop
		}
		delete(f.subs[id], s)
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
	f.resyncAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if strings.HasPrefix(n.Payload, f.self) {
			continue // this process's own, told to its watchers already
		}
		var u order.Update
		if err := json.Unmarshal([]byte(n.Payload), &u); err != nil || u.OrderID == "" {
			f.log.WarnContext(ctx, "order status announcement not understood", "payload", n.Payload)
			continue
		}
		f.mu.Lock()
		if u.Version == 0 {
			delete(f.recent, u.OrderID)
			delete(f.older, u.OrderID)
		} else {
			f.follow(&u)
		}
		for s := range f.subs[u.OrderID] {
			if u.Version == 0 {
				s.deliver(nil)
			} else {
				s.deliver(&u)
			}
		}
		f.mu.Unlock()
	}
}

func (f *StatusFeed) resyncAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Changes of other replicas may have been missed: kept copies cannot be trusted.
	clear(f.recent)
	clear(f.older)
	for _, subs := range f.subs {
		for s := range subs {
			s.deliver(nil)
		}
	}
}

func (f *StatusFeed) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	for id, subs := range f.subs {
		for s := range subs {
			s.mu.Lock()
			if !s.closed {
				s.closed = true
				close(s.ready)
			}
			s.mu.Unlock()
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
