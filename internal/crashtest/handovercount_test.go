package crashtest

import (
	"encoding/json"
	"testing"
)

// lines builds log lines as a process's logWatch holds them, from
// message and transfer id pairs (a summary line's id is its count).
func lines(t *testing.T, pairs ...[2]string) []logLine {
	t.Helper()
	var out []logLine
	for _, p := range pairs {
		fields := map[string]any{"message": p[0], "transfer_id": p[1]}
		if p[0] == summary {
			fields = map[string]any{"message": p[0], "transfers": json.Number(p[1])}
		}
		raw, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, logLine{fields: m, raw: string(raw)})
	}
	return out
}

// summary is the engine's line of how many transfers a stop is about to
// try to take back (Engine.awaitHandover).
const summary = "no other replica took over transfers handed over: taking them back to give their callers back"

// The storm's hand-over counts: taken back counts only transfers the
// process had handed over. The engine takes back, by the same line, what
// it kept because the hand-over's save failed, and its summary line
// ("taking them back") counts every transfer it is about to try, those
// and the ones a peer turns out to drive: counted from that line, a stop
// that handed one transfer over and could not save the other's hand-over
// said "3 transfers handed over, 3 of them taken back" for one.
func TestTheHandoverCountsTakeBackOnlyWhatWasHandedOver(t *testing.T) {
	stopped := lines(t,
		[2]string{"resuming transfer", "tr_a"}, // driven before the stop: no hand-over
		[2]string{handedOverLine, "tr_a"},
		[2]string{handedOverLine, "tr_b"},
		[2]string{handedOverLine, "tr_c"},
		[2]string{notHandedLine, "tr_d"},
		// tr_a, tr_c (claimed by a peer that has not resumed it yet)
		// and tr_d: "3 transfers".
		[2]string{summary, "3"},
		[2]string{takenBackLine, "tr_a"}, // handed over, unclaimed
		[2]string{takenBackLine, "tr_d"}, // kept: its hand-over was never saved
		[2]string{"resuming transfer", "tr_a"},
		[2]string{"resuming transfer", "tr_d"},
	)
	// A peer's: it claimed tr_b (and tr_c), and takes back nothing of
	// another's.
	peer := lines(t, [2]string{"resuming transfer", "tr_b"}, [2]string{takenBackLine, "tr_c"})
	var c handoverCounts
	c.add(countHandovers(stopped))
	c.add(countHandovers(peer))
	if want := (handoverCounts{handed: 3, takenBack: 1, notSaved: 1}); c != want {
		t.Errorf("counted %+v, want %+v", c, want)
	}
	want := ", 3 transfers handed over to a peer (1 of them taken back unclaimed, their callers given back), 1 hand-overs not saved"
	if got := c.phrase(); got != want {
		t.Errorf("the storm's line says %q, want %q", got, want)
	}
	if got := (handoverCounts{}).phrase(); got != "" {
		t.Errorf("with no hand-over the line says %q, want nothing", got)
	}
}
