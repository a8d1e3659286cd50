package console

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// hub tells the pages listening for live updates that something changed.
// One watcher serves every page: it follows the store's change
// notifications where the store has them (PostgreSQL), and otherwise reads
// the store's change cursor every interval, one cheap query whatever the
// number of pages. It runs only while a page listens.
type hub struct {
	store    tokenkeeper.ConsoleStore
	changes  tokenkeeper.ChangeNotifier
	interval time.Duration
	log      *slog.Logger

	mu     sync.Mutex
	subs   map[chan struct{}]struct{} // guarded by mu
	stop   context.CancelFunc         // ends the watcher; nil while none runs; guarded by mu
	closed bool                       // guarded by mu
	done   chan struct{}              // closed by close
}

func newHub(store tokenkeeper.ConsoleStore, changes tokenkeeper.ChangeNotifier, interval time.Duration, log *slog.Logger) *hub {
	return &hub{store: store, changes: changes, interval: interval, log: log,
		subs: map[chan struct{}]struct{}{}, done: make(chan struct{})}
}

// subscribe returns a channel that receives a value after changes (several
// changes may arrive as one) and the function that ends the subscription;
// ok is false once the hub is closed.
func (h *hub) subscribe() (ch <-chan struct{}, unsubscribe func(), ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, false
	}
	c := make(chan struct{}, 1)
	h.subs[c] = struct{}{}
	if h.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.stop = cancel
		go h.watch(ctx)
	}
	return c, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs, c)
		if len(h.subs) == 0 && h.stop != nil {
			h.stop()
			h.stop = nil
		}
	}, true
}

// publish wakes every subscriber without blocking.
func (h *hub) publish() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c <- struct{}{}:
		default: // already woken
		}
	}
}

// watch publishes the store's changes until ctx ends.
func (h *hub) watch(ctx context.Context) {
	if h.changes != nil {
		err := h.changes.Subscribe(ctx, func(tokenkeeper.Change) { h.publish() })
		if err == nil || ctx.Err() != nil {
			return
		}
		h.log.Warn("change notifications unavailable; polling", "err", err)
	}
	last, _ := h.store.ChangeCursor(ctx)
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := h.store.ChangeCursor(ctx)
		if err != nil {
			continue // the database is away; try again at the next tick
		}
		if cur != last {
			last = cur
			h.publish()
		}
	}
}

// close ends every subscription and the watcher; later ones are refused.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	close(h.done)
	if h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// handleEvents is the pages' event stream (Server-Sent Events): an event
// "change" after the store changed, a comment every heartbeat, and an
// event "expired" before it ends when the session's access token no longer
// verifies (signed out, expired): the page then renews the session by
// reloading its content and listens again. It never renews a session
// itself, and never carries data: a page fetches what it shows.
func (c *Console) handleEvents() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.session(w, r, nil)
		if s == nil {
			http.Error(w, "signed out", http.StatusUnauthorized)
			return
		}
		ch, unsubscribe, ok := c.hub.subscribe()
		if !ok {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		defer unsubscribe()
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		send := func(msg string) bool {
			_ = rc.SetWriteDeadline(time.Now().Add(c.cfg.Heartbeat + 10*time.Second))
			if _, err := w.Write([]byte(msg)); err != nil {
				return false
			}
			return rc.Flush() == nil
		}
		if !send("retry: 3000\n: live\n\n") {
			return
		}
		beat := time.NewTicker(c.cfg.Heartbeat)
		defer beat.Stop()
		// At most one change event a second: a page refetches what it shows
		// after each, and a busy broker changes all the time.
		var held <-chan time.Time // set while a change waits for the gap
		last := time.Time{}
		for {
			select {
			case <-r.Context().Done():
				return
			case <-c.hub.done:
				return
			case <-ch:
				if held != nil {
					continue
				}
				if wait := time.Second - time.Since(last); wait > 0 {
					held = time.After(wait)
					continue
				}
				if !send("event: change\ndata: {}\n\n") {
					return
				}
				last = time.Now()
			case <-held:
				held = nil
				if !send("event: change\ndata: {}\n\n") {
					return
				}
				last = time.Now()
			case <-beat.C:
				if _, err := c.cfg.Auth.Verify(r.Context(), s.token); err != nil {
					send("event: expired\ndata: {}\n\n")
					return
				}
				if !send(": ping\n\n") {
					return
				}
			}
		}
	})
}
