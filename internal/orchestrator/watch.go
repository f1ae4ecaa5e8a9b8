package orchestrator

import (
	"context"
	"sync"
	"time"
)

// A watcher keeps the latest reading of one provider view (NetSapiens:
// one domain) for every transfer that needs it, as a Kubernetes shared
// informer does: one read serves them all, and each read wakes every
// subscriber through the work queue. It reads at PollInterval while some
// subscriber waits for something to happen soon (a ringing consult, a
// join or a restore to show), at PollMaxInterval otherwise (a manual
// consult in conversation, a tombstone), and at once when a subscriber
// kicks it because it needs a reading newer than its last action.
type watcher struct {
	e   *Engine
	p   Provider
	key string

	mu   sync.Mutex
	subs map[string]*entry
	snap *snapshot
	kick chan struct{}
	// want: subscribers that asked for a reading newer than their last
	// action; the next reading wakes them whatever it shows.
	want map[string]bool
	// seen: what the last reading showed of each subscriber. A reading
	// that shows a subscriber nothing new does not wake it: a parked
	// transfer costs the watcher's reading of it, not a reconcile per
	// poll. Its deadlines wake it through the queue's timers.
	seen map[string]Observation
	// reads counts the readings begun (subscribers), so that a
	// subscriber can tell a reading begun before it subscribed, which
	// was not read for it (see reading).
	reads uint64
}

// snapshot is one reading: taken no earlier than at, for records no
// older than those Engine.published counted as published.
type snapshot struct {
	at        time.Time
	published uint64
	read      uint64 // the watcher's count of readings begun, this one's
	view      View
	err       error
}

// ViewWatcher is implemented by providers that can be told which views
// are watched, to subscribe to the provider's events about them
// (NetSapiens: an event subscription per domain). The engine calls
// WatchStarted when a view's watcher starts and WatchStopped when it
// stops, in that order for a key, with a lock held: neither may block or
// call back into the engine.
type ViewWatcher interface {
	WatchStarted(key string)
	WatchStopped(key string)
}

// watchKey names a view: a provider account (two tenants' NetSapiens
// accounts are different PBXs) and the adapter's key within it.
type watchKey struct {
	account Provider
	key     string
}

// subscribe makes en's transfer read by its provider view's watcher,
// starting the watcher if it is the first.
func (e *Engine) subscribe(en *entry) {
	if en.w != nil {
		return
	}
	k := watchKey{en.p, en.p.WatchKey(en.t)}
	e.watchMu.Lock()
	w := e.watchers[k]
	if w == nil {
		w = &watcher{e: e, p: en.p, key: k.key, subs: map[string]*entry{}, kick: make(chan struct{}, 1),
			want: map[string]bool{}, seen: map[string]Observation{}}
		e.watchers[k] = w
		if vw, ok := en.p.(ViewWatcher); ok {
			vw.WatchStarted(k.key)
		}
		e.bg.Add(1)
		go func() {
			defer e.bg.Done()
			w.loop(k)
		}()
	}
	w.mu.Lock()
	w.subs[en.id] = en
	en.subscribed = w.reads
	w.mu.Unlock()
	e.watchMu.Unlock()
	en.w = w
	w.poke()
}

// unsubscribe stops reading for en.
func (e *Engine) unsubscribe(en *entry) {
	w := en.w
	if w == nil {
		return
	}
	en.w = nil
	w.mu.Lock()
	delete(w.subs, en.id)
	delete(w.want, en.id)
	delete(w.seen, en.id)
	w.mu.Unlock()
}

// need records that en waits for a reading newer than its last action
// and asks for one.
func (w *watcher) need(id string) {
	w.await(id)
	w.poke()
}

// await records that a transfer waits for the next reading, whatever it
// shows, at the watcher's own pace.
func (w *watcher) await(id string) {
	w.mu.Lock()
	w.want[id] = true
	w.mu.Unlock()
}

// poke asks for a reading as soon as the current one (if any) is done.
func (w *watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// PokeView makes the watcher of account's view key read now (within
// the 50 ms that kicks share), if some transfer is watching it. A
// provider's event subscription calls it when a delivery mentions the
// view: the event only hastens the reading, and the reading, never the
// event, is what transfers act on, so that a forged, lagging or
// duplicated delivery cannot change a transfer by itself.
func (e *Engine) PokeView(account Provider, key string) {
	e.watchMu.Lock()
	w := e.watchers[watchKey{account, key}]
	e.watchMu.Unlock()
	if w != nil {
		w.poke()
	}
}

// latest returns the last reading, or nil.
func (w *watcher) latest() *snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snap
}

// loop reads until no transfer needs the view any more or the engine
// stops.
func (w *watcher) loop(k watchKey) {
	e := w.e
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Capped, so that a kick (Notify: an event arrived) is read within
	// 50 ms even when polling is slow because events drive the engine.
	minGap := min(max(e.cfg.PollInterval/5, time.Millisecond), 50*time.Millisecond)
	var last time.Time
	for {
		select {
		case <-e.hard.Done():
			return
		case <-timer.C:
		case <-w.kick:
		}
		// Kicks within minGap of the last read share the next one.
		if wait := minGap - time.Since(last); wait > 0 {
			select {
			case <-e.hard.Done():
				return
			case <-time.After(wait):
			}
		}
		// Both noted before the records are loaded. A record whose
		// publication the count includes is the one loaded, or a later
		// one (see reading). And a reading taken after a time was read
		// for the records as they were by then: one taken after a step
		// ended was read for a record that carries the step's intent,
		// which is saved before its request is sent.
		start := e.now()
		published := e.published.Load()
		ts, ids, fast, read := w.subscribers()
		if len(ts) == 0 {
			e.watchMu.Lock()
			w.mu.Lock()
			empty := len(w.subs) == 0
			w.mu.Unlock()
			if empty {
				delete(e.watchers, k)
				if vw, ok := w.p.(ViewWatcher); ok {
					vw.WatchStopped(k.key)
				}
				e.watchMu.Unlock()
				return
			}
			e.watchMu.Unlock()
			continue
		}
		last = time.Now()
		ctx, cancel := context.WithTimeout(e.hard, e.cfg.StepTimeout)
		v, err := w.p.Read(ctx, w.key, ts)
		cancel()
		e.m.reads.WithLabelValues(w.p.Name(), resultLabel(err)).Inc()
		w.mu.Lock()
		w.snap = &snapshot{at: start, published: published, read: read, view: v, err: err}
		wake := w.changedLocked(ts, ids, v, err)
		w.mu.Unlock()
		for _, id := range wake {
			e.q.Add(id)
		}
		interval := e.cfg.PollMaxInterval
		if fast {
			interval = e.cfg.PollInterval
		}
		timer.Reset(interval)
	}
}

// changedLocked returns the subscribers a new reading must wake: those
// that asked for it, those it shows something new of, and every one when
// it failed (an unreadable provider is theirs to judge).
func (w *watcher) changedLocked(ts []*Transfer, ids []string, v View, err error) []string {
	if err != nil {
		clear(w.seen)
		clear(w.want)
		return ids
	}
	wake := ids[:0:0]
	for i, id := range ids {
		if w.subs[id] == nil {
			// Dropped while this reading was taken (unsubscribe emptied
			// its seen and want): kept, what it showed would stay for as
			// long as the view is watched, which a busy view always is.
			continue
		}
		obs, oerr := v.Observe(ts[i])
		last, had := w.seen[id]
		switch {
		case oerr != nil:
			delete(w.seen, id)
		case !had || last != obs:
			w.seen[id] = obs
		case !w.want[id]:
			continue
		}
		delete(w.want, id)
		wake = append(wake, id)
	}
	return wake
}

// subscribers returns the records to read (as last reconciled), their
// ids, whether any of them waits for something to happen soon, and the
// count of readings begun, this one's.
func (w *watcher) subscribers() ([]*Transfer, []string, bool, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reads++
	ts := make([]*Transfer, 0, len(w.subs))
	ids := make([]string, 0, len(w.subs))
	fast := false
	for id, en := range w.subs {
		t := en.cur.Load()
		if t == nil {
			continue
		}
		ts = append(ts, t)
		ids = append(ids, id)
		fast = fast || urgent(t)
	}
	return ts, ids, fast, w.reads
}

// urgent reports whether t waits for the provider to show something that
// should be acted on quickly.
func urgent(t *Transfer) bool {
	switch t.State {
	case StateConsulting:
		return !t.Answered
	case StateCompleting, StateRecovering:
		return true
	}
	return false
}

func resultLabel(err error) string {
	if err == nil {
		return "ok"
	}
	return KindOf(err).String()
}
