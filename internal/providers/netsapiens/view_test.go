package netsapiens

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/apiclient"
)

// parkedListing is a domain's listing as the PBX shows it with n
// transfers consulting: each caller's session held with its agent, and
// each consult answered, with the fields a NetSapiens row carries.
func parkedListing(n int) []byte {
	var b strings.Builder
	b.WriteByte('[')
	row := func(session, orig, term, by, origUser, termUser, origInfo string) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"core-server":"core1-sim.netsapiens.test","call-session-id":%q,"call-orig-call-id":%q,`+
			`"call-orig-match-uri":"sip:*@192.0.2.10","call-orig-user":%q,"call-orig-domain":"","call-orig-uri":"sip:15555555555@192.0.2.10",`+
			`"call-orig-name":"15555555555","caller-id-number":"15555555555","call-dialed-number":"11111111111","call-by-action":"",`+
			`"call-by-user":"","call-by-domain":"","call-by-call-id":%q,"call-term-call-id":%q,`+
			`"call-term-user":%q,"call-term-domain":"TEST","call-term-uri":"sip:1010@TEST","call-start-datetime":"2026-11-30 02:46:12",`+
			`"call-answer-datetime":"2026-11-30 02:46:12","call-orig-info":%q,"term-orig-info":"active","call-term-info":"active","call-audio-codec":"PCMU"}`,
			session, orig, origUser, by, term, termUser, origInfo)
	}
	for i := range n {
		row(fmt.Sprintf("2026113002461%07d", 2*i), fmt.Sprintf("0_%d@192.0.2.10", 3051823727+i),
			fmt.Sprintf("2026113002461%07d-6a84ad451eceaf340fdfd429ddaf%04x", 2*i, i), "", "", "1000", "held")
		row(fmt.Sprintf("2026113002461%07d", 2*i+1), ConsultCallID(fmt.Sprintf("tr_01M8Q2HGPCHMRF4W0QE3C%05d", i)),
			fmt.Sprintf("2026113002461%07d-9b84ad451eceaf340fdfd429ddaf%04x", 2*i+1, i), "", "1000", "1010", "active")
	}
	b.WriteByte(']')
	return []byte(b.String())
}

// heapAfter returns the heap's live bytes after a collection, with keep
// reachable until then.
func heapAfter(keep any) uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	runtime.KeepAlive(keep)
	return m.HeapAlloc
}

// A view keeps about half of what its decoded rows take (the view that
// kept the rows and a map of their ids took about 550 bytes a call): a
// watcher holds one per watched domain for as long as the domain has a
// transfer. It fails if the view keeps the decoded rows.
func TestViewIsCompact(t *testing.T) {
	const views, perView = 50, 200
	data := parkedListing(perView / 2)
	base := heapAfter(nil)
	decoded := make([][]activeCall, views)
	for i := range decoded {
		calls, err := decodeRows(data)
		if err != nil || len(calls) != perView {
			t.Fatalf("decoding: %d calls, %v", len(calls), err)
		}
		decoded[i] = calls
	}
	rowsBytes := heapAfter(decoded) - base
	kept := make([]*view, views)
	for i, calls := range decoded {
		kept[i] = newView(calls)
	}
	decoded = nil
	viewBytes := heapAfter(kept) - base
	perRow, perCall := float64(rowsBytes)/(views*perView), float64(viewBytes)/(views*perView)
	t.Logf("decoded rows %.0f bytes a call, a view %.0f", perRow, perCall)
	if perCall > 0.6*perRow {
		t.Errorf("a view keeps %.0f bytes a call, its decoded rows alone took %.0f", perCall, perRow)
	}
}

// Observing through a view judges as observe judges the whole listing,
// for random listings whose rows share ids (duplicate call-ids, a row
// carrying one id twice, empty ids), with the index's hash and with one
// that makes every id collide. It prints its seed; a seed that ever
// failed belongs in the list.
func TestViewObservesLikeTheWholeListingRandomly(t *testing.T) {
	seeds := []uint64{1, 2, 3, rand.Uint64()}
	t.Logf("seed %d", seeds[len(seeds)-1])
	for _, seed := range seeds {
		r := rand.New(rand.NewPCG(seed, 0))
		pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
		transfers := []string{"tr1", "tr2", "tr3"}
		ids := []string{"", "a", "b", "c", "d", "s1", "s2", ConsultCallID("tr1"), ConsultCallID("tr2"), "own-consult"}
		for round := range 300 {
			calls := make([]activeCall, r.IntN(12))
			for i := range calls {
				calls[i] = activeCall{
					Server: pick("", "core1", "core2"), SessionID: pick(ids...),
					OrigCallID: pick(ids...), TermCallID: pick(ids...), ByCallID: pick(ids...),
					OrigUser: pick("", "1000", "1010@TEST"), TermUser: pick("", "1000", "1010"),
					OrigInfo: pick("", "active", "held"), TermInfo: pick("", "active", "alerting", "held"),
					OrigURIUser: pick("", "1000", "+18587645200"), TermURIUser: pick("", "1010", "18587645200"),
					Dialed: pick("", "11111111111", "18587645200"),
				}
			}
			tr := &orchestrator.Transfer{ID: pick(transfers...)}
			tr.Request.Call.User = "1000"
			tr.Request.Target = pick("1010", "1011", "18587645200")
			tr.Legs.Caller.CallID, tr.Legs.Caller.SessionID = pick(ids...), pick(ids...)
			tr.Legs.Agent.CallID = pick(ids...)
			tr.Legs.Consult.CallID = pick("", "own-consult")
			tr.Legs.Consult.SessionID = pick("", "s1", "s2")
			if r.IntN(2) == 0 {
				tr.Sent.Join = time.Unix(1, 0)
			}
			want, wantErr := observe(tr, calls)
			if wantErr == nil {
				wantErr = unrecognisedJoin(tr, want)
			}
			// As a Read that read the unlisted caller's call by its id and
			// was answered 404 (the whole listing's scan takes an unlisted
			// caller for gone).
			var ended goneCalls
			ended.add(tr.Legs.Caller.CallID)
			for name, v := range map[string]*view{
				"hashed":   newView(calls),
				"collided": newViewHashed(calls, func(string) uint32 { return 7 }),
			} {
				v.gone = &ended
				got, err := v.Observe(tr)
				if (err != nil) != (wantErr != nil) || (err == nil && got != want) {
					t.Fatalf("seed %d, round %d, %s: through the view %+v, %v; scanning the listing %+v\nlisting %+v\ntransfer legs %+v",
						seed, round, name, got, err, want, calls, tr.Legs)
				}
			}
		}
	}
}

// An observation shares no string with its view's text: the watcher
// keeps it and the engine saves its ids, and one such string would keep
// the whole listing alive after the next reading replaced the view. It
// checks both a consult leg seen for the first time and one already
// saved.
func TestObservationsKeepNoPartOfTheView(t *testing.T) {
	calls, err := decodeRows(parkedListing(3))
	if err != nil {
		t.Fatal(err)
	}
	v := newView(calls)
	text := uintptr(unsafe.Pointer(unsafe.StringData(v.text)))
	inText := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		return s != "" && p >= text && p < text+uintptr(len(v.text))
	}
	for i := 0; i+1 < len(calls); i += 2 {
		tr := &orchestrator.Transfer{ID: fmt.Sprintf("tr_01M8Q2HGPCHMRF4W0QE3C%05d", i/2)}
		tr.Legs.Caller.CallID, tr.Legs.Caller.SessionID = calls[i].OrigCallID, calls[i].SessionID
		tr.Legs.Agent.CallID = calls[i].TermCallID
		for _, saved := range []bool{false, true} {
			if saved {
				tr.Legs.Consult.SessionID = strings.Clone(calls[i+1].SessionID)
				tr.Legs.Consult.Server = strings.Clone(calls[i+1].Server)
			}
			obs, err := v.Observe(tr)
			if err != nil || obs.ConsultLeg.SessionID != calls[i+1].SessionID || obs.ConsultLeg.Server != calls[i+1].Server {
				t.Fatalf("transfer %d: observation %+v, %v", i/2, obs, err)
			}
			for _, s := range []string{obs.ConsultLeg.SessionID, obs.ConsultLeg.Server, obs.Detail} {
				if inText(s) {
					t.Errorf("transfer %d (consult's ids saved: %v): %q shares the view's text", i/2, saved, s)
				}
			}
		}
	}
}

// A domain's listing may be far longer than other responses: one of 1,400
// calls (over apiclient.MaxBody, which cut it before) is read and
// observed; one over maxListing fails once, as rejected, not retried, and
// says why.
func TestLongListings(t *testing.T) {
	long := parkedListing(700)
	if len(long) <= apiclient.MaxBody {
		t.Fatalf("the listing is %d bytes, want more than %d", len(long), apiclient.MaxBody)
	}
	t.Logf("%d calls in %d bytes, %d a call", 1400, len(long), len(long)/1400)
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		switch r.URL.Path {
		case "/domains/long/calls":
			_, _ = w.Write(long)
		case "/domains/too-long/calls":
			_, _ = w.Write([]byte("[" + strings.Repeat(" ", maxListing) + "]"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, APIKey: "k", Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	calls, err := decodeRows(long)
	if err != nil {
		t.Fatal(err)
	}
	last := len(calls) - 2 // the caller's session of the listing's last transfer
	tr := &orchestrator.Transfer{ID: fmt.Sprintf("tr_01M8Q2HGPCHMRF4W0QE3C%05d", last/2)}
	tr.Request.Call.Domain = "long"
	tr.Legs.Caller.CallID, tr.Legs.Caller.SessionID = calls[last].OrigCallID, calls[last].SessionID
	tr.Legs.Agent.CallID = calls[last].TermCallID
	v, err := c.Read(context.Background(), "", []*orchestrator.Transfer{tr})
	if err != nil {
		t.Fatalf("reading a listing of %d bytes: %v", len(long), err)
	}
	if obs, err := v.Observe(tr); err != nil || obs.Caller != orchestrator.CallerHeld || obs.Consult != orchestrator.ConsultAnswered {
		t.Errorf("the last transfer of the long listing: %+v, %v; want its caller held and its consult answered", obs, err)
	}

	gets.Store(0)
	tr.Request.Call.Domain = "too-long"
	_, err = c.Read(context.Background(), "", []*orchestrator.Transfer{tr})
	if !errors.Is(err, apiclient.ErrBodyTooLong) || orchestrator.KindOf(err) != orchestrator.KindProviderRejected {
		t.Errorf("a listing over maxListing: %v (kind %v); want ErrBodyTooLong, rejected", err, orchestrator.KindOf(err))
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("a listing over maxListing was read %d times, want once", n)
	}
}

// BenchmarkView builds a view of a domain with 100 transfers consulting
// (200 calls) and observes each transfer through it, as a watcher's
// reading does after decoding the listing (BenchmarkListingDecode).
func BenchmarkView(b *testing.B) {
	calls, err := decodeRows(parkedListing(100))
	if err != nil {
		b.Fatal(err)
	}
	ts := make([]*orchestrator.Transfer, 0, 100)
	for i := 0; i+1 < len(calls); i += 2 {
		t := &orchestrator.Transfer{ID: fmt.Sprintf("tr_01M8Q2HGPCHMRF4W0QE3C%05d", i/2)}
		t.Legs.Caller.CallID, t.Legs.Caller.SessionID = calls[i].OrigCallID, calls[i].SessionID
		t.Legs.Agent.CallID = calls[i].TermCallID
		// The consult's ids saved, as after the first reading that showed it.
		t.Legs.Consult.CallID = ConsultCallID(t.ID)
		t.Legs.Consult.SessionID, t.Legs.Consult.Server = calls[i+1].SessionID, calls[i+1].Server
		ts = append(ts, t)
	}
	b.ReportAllocs()
	for b.Loop() {
		v := newView(calls)
		for _, t := range ts {
			if obs, err := v.Observe(t); err != nil || obs.Consult != orchestrator.ConsultAnswered {
				b.Fatal(obs, err)
			}
		}
	}
}
