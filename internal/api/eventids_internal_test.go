package api

import (
	"strconv"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

// An event id names its position for its tenant's stream only, made with
// the store's secret: the same from every replica of the store, opaque,
// and refused by another tenant's stream or with a letter changed. Plain
// numbers are the ids older versions sent: a stream resumes after one up
// to the key's LegacyBelow, and after LegacyBelow past it (whose answer
// would otherwise tell a tenant LegacyBelow, how many events all tenants
// had made); a sign is not a plain number, as the contract has it.
func TestEventIDs(t *testing.T) {
	k, err := orchestrator.NewEventIDKey(1000)
	if err != nil {
		t.Fatal(err)
	}
	ids, again, beta := newEventIDs(k, "acme"), newEventIDs(k, "acme"), newEventIDs(k, "beta")
	for _, pos := range []int64{1, 2, 1001, 1 << 40} {
		id := ids.id(pos)
		if id != again.id(pos) {
			t.Fatalf("two replicas with one key made %s and %s for position %d", id, again.id(pos), pos)
		}
		if _, err := strconv.ParseInt(id, 10, 64); err == nil || len(id) != 22 {
			t.Fatalf("the id of position %d is %q, want 22 letters that are no number", pos, id)
		}
		if got, ok := again.pos(id); !ok || got != pos {
			t.Fatalf("id %s read back as %d (%v), want %d", id, got, ok, pos)
		}
		if got, ok := beta.pos(id); ok {
			t.Fatalf("tenant beta's stream read acme's id %s as position %d", id, got)
		}
		for i := range id {
			changed := []byte(id)
			changed[i] = map[bool]byte{true: 'B', false: 'A'}[changed[i] == 'A']
			if got, ok := ids.pos(string(changed)); ok {
				t.Fatalf("%s, %s with letter %d changed, read as position %d", changed, id, i, got)
			}
		}
	}
	other, err := orchestrator.NewEventIDKey(1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := newEventIDs(other, "acme").pos(ids.id(5)); ok {
		t.Fatal("an id made with another store's secret was read")
	}
	for id, want := range map[string]int64{"0": 0, "1": 1, "1000": 1000, " 999 ": 999, "1001": 1000, "99999999999999999999999": 1000,
		"-1": -1, "+1": -1, "-0": -1, "+0": -1, "": -1, "x": -1, "１": -1} {
		if n, ok := ids.pos(id); ok != (want >= 0) || ok && n != want {
			t.Errorf("id %q read as %d (%v), want %d (-1: refused)", id, n, ok, want)
		}
	}
}
