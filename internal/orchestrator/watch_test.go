package orchestrator

import "testing"

// stateView shows every transfer with the caller in one state.
type stateView CallerState

func (v stateView) Observe(*Transfer) (Observation, error) {
	return Observation{Caller: CallerState(v)}, nil
}

// Found by the engine review (sixty-third pass): a reading taken while a
// transfer was dropped (ended, or taken over by another replica) was read
// for it, and its result recorded what it showed of it in the watcher's
// seen map after unsubscribe had emptied that: nothing deleted it again
// while the view stayed watched (a busy domain's watcher never stops), so
// that every transfer that ended while its view was being read (most of
// them, where reads take a good part of the poll interval) cost the
// watcher an entry for the process's life. A reading keeps nothing of
// transfers no longer subscribed, and wakes none of them.
func TestAReadingKeepsNothingOfATransferDroppedWhileItWasTaken(t *testing.T) {
	w := &watcher{subs: map[string]*entry{"a": {id: "a"}}, want: map[string]bool{}, seen: map[string]Observation{}}
	// Read for a and b; b was unsubscribed before the reading came back.
	ts := []*Transfer{{ID: "a"}, {ID: "b"}}
	wake := w.changedLocked(ts, []string{"a", "b"}, stateView(CallerHeld), nil)
	if _, ok := w.seen["b"]; ok {
		t.Errorf("the watcher keeps what a reading showed of b, which no longer watches the view")
	}
	if _, ok := w.seen["a"]; !ok {
		t.Errorf("the watcher keeps nothing of a, which watches the view")
	}
	if len(wake) != 1 || wake[0] != "a" {
		t.Errorf("woke %q, want [a]", wake)
	}
}
