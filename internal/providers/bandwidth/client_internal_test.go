package bandwidth

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

func TestKindOf(t *testing.T) {
	cases := []struct {
		status         int
		category, code string
		want           orchestrator.Kind
	}{
		{404, "not-found", "call-not-found", orchestrator.KindCallNotFound},
		{403, "forbidden", "call-id-not-found", orchestrator.KindCallNotFound},
		{403, "forbidden", "call-invalid-state", orchestrator.KindCallNotActive},
		{401, "authentication", "unauthorized", orchestrator.KindProviderAuth},
		{401, "", "", orchestrator.KindProviderAuth},
		{401, "AUTHORIZATION", "number-access-denied", orchestrator.KindProviderAuth},
		{403, "authorization", "user-access-denied", orchestrator.KindProviderAuth},
		{403, "", "", orchestrator.KindProviderAuth},
		{400, "bad-request", "validation-error", orchestrator.KindProviderRejected},
		{400, "bad-request", "missing-property", orchestrator.KindProviderRejected},
		{400, "bad-request", "bridge-bridged-callId", orchestrator.KindProviderRejected},
		{403, "forbidden", "bridge-callIds-overflow", orchestrator.KindProviderRejected},
		// The FORBIDDEN group's category is a guess (ForbiddenCategory):
		// its codes decide, whichever it is.
		{403, "authorization", "bridge-callIds-overflow", orchestrator.KindProviderRejected},
		{403, "authorization", "invalid-call-to-number", orchestrator.KindProviderRejected},
		{403, "authorization", "call-invalid-state", orchestrator.KindCallNotActive},
		{403, "authorization", "call-id-not-found", orchestrator.KindCallNotFound},
		{403, "authentication", "", orchestrator.KindProviderAuth},
		{403, "forbidden", "invalid-call-to-number", orchestrator.KindProviderRejected},
		{403, "credit", "insufficient-available-balance", orchestrator.KindProviderRejected},
		{404, "not-found", "bridge-not-found", orchestrator.KindProviderRejected},
		{404, "", "", orchestrator.KindProviderRejected},
		{403, "limit", "call-rate-limit", orchestrator.KindProviderUnavailable},
		{429, "too-many-requests", "rate-limit-reached", orchestrator.KindProviderUnavailable},
		{409, "conflict", "call-update-conflict", orchestrator.KindProviderUnavailable},
		{503, "unavailable", "call-transfer-error", orchestrator.KindProviderUnavailable},
		{503, "unavailable", "call-unavailable", orchestrator.KindProviderUnavailable},
		{500, "", "", orchestrator.KindProviderUnavailable},
	}
	for _, tc := range cases {
		if got := kindOf(&APIError{Status: tc.status, Category: tc.category, Code: tc.code}); got != tc.want {
			t.Errorf("%d %s/%s: kind %s, want %s", tc.status, tc.category, tc.code, got, tc.want)
		}
	}
}

func TestLocationID(t *testing.T) {
	good := map[string]string{
		"https://api.catapult.inetwork.com/v1/users/u-x/calls/c-zan4g74pprsq": "c-zan4g74pprsq",
		"/v1/users/u-x/calls/c-1":            "c-1",
		"/v1/users/u-x/bridges/brg-65dh/":    "brg-65dh",
		"http://localhost/path/transferedId": "transferedId",
		"http://localhost/callId?x=1#f":      "callId",
		"  /v1/users/u/calls/456  ":          "456",
		"c-bare":                             "c-bare",
	}
	for loc, want := range good {
		if got, err := locationID(loc); err != nil || got != want {
			t.Errorf("locationID(%q) = %q, %v; want %q", loc, got, err, want)
		}
	}
	for _, loc := range []string{"", "   ", "/", "https://api.example.com", "https://api.example.com/", "/v1/users/u/calls/..",
		"/calls/%2F", "%zz", "/calls/a b", "/calls/-x"} {
		if got, err := locationID(loc); err == nil {
			t.Errorf("locationID(%q) = %q, want an error", loc, got)
		}
	}
}

func TestDecodeError(t *testing.T) {
	e := decodeError(429, []byte(`{"category":"too-many-requests","code":"rate-limit-reached","details":[{"name":"rateLimitResetTime","value":"1479308598680"},{"name":"requestMethod","value":"GET"}]}`))
	if e.Category != "too-many-requests" || e.Code != "rate-limit-reached" || e.resetMS != 1479308598680 {
		t.Errorf("429 body: %+v", e)
	}
	e = decodeError(403, []byte(`{"category":"limit","code":"call-rate-limit","message":"You can create 1 calls per 1 seconds","details":[]}`))
	if e.Status != 403 || e.Code != "call-rate-limit" || e.Message != "You can create 1 calls per 1 seconds" {
		t.Errorf("403 body: %+v", e)
	}
	e = decodeError(400, []byte(`{"code":12,"message":"line\none\t\u0001two","details":"odd"}`))
	if e.Code != "12" || e.Message != "line one two" {
		t.Errorf("odd body: %+v", e)
	}
	e = decodeError(502, []byte("<html><body>Bad gateway</body></html>"))
	if e.Status != 502 || e.Code != "" || !strings.Contains(e.Message, "Bad gateway") {
		t.Errorf("HTML body: %+v", e)
	}
	long := decodeError(500, []byte(`{"message":"`+strings.Repeat("x", 5000)+`"}`))
	if n := len([]rune(long.Message)); n > maxMessage+1 {
		t.Errorf("message of %d runes kept", n)
	}
	if got := (&APIError{Status: 404, Code: "call-not-found", Message: "gone"}).Error(); got != "HTTP 404 call-not-found: gone" {
		t.Errorf("Error() = %q", got)
	}
}

func TestResetWait(t *testing.T) {
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	c := &Client{now: func() time.Time { return now }}
	h := http.Header{}
	h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(1500*time.Millisecond).UnixMilli(), 10))
	if d, ok := c.resetWait(h, &APIError{}); !ok || d != 1500*time.Millisecond {
		t.Errorf("ms header: %s %v", d, ok)
	}
	h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(3*time.Second).Unix(), 10))
	if d, ok := c.resetWait(h, &APIError{}); !ok || d != 3*time.Second {
		t.Errorf("seconds header: %s %v", d, ok)
	}
	if d, ok := c.resetWait(http.Header{}, &APIError{resetMS: now.Add(time.Second).UnixMilli()}); !ok || d != time.Second {
		t.Errorf("body detail: %s %v", d, ok)
	}
	h = http.Header{}
	h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(-time.Minute).UnixMilli(), 10))
	if d, ok := c.resetWait(h, &APIError{}); !ok || d != 0 {
		t.Errorf("past reset: %s %v", d, ok)
	}
	if _, ok := c.resetWait(http.Header{}, &APIError{}); ok {
		t.Error("no hint at all")
	}
}

// do waits out a 429 until X-RateLimit-Reset even for a create, retries
// transient failures of safe requests only, and stops when ctx ends.
func TestDoRetries(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	script := map[string][]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.Method+" "+r.URL.Path)
		codes := script[r.URL.Path]
		code := http.StatusCreated
		if len(codes) > 0 {
			code, script[r.URL.Path] = codes[0], codes[1:]
		}
		mu.Unlock()
		if user, pass, ok := r.BasicAuth(); !ok || user != "tok" || pass != "sec" {
			code = http.StatusUnauthorized
		}
		switch code {
		case http.StatusTooManyRequests:
			reset := 30 * time.Millisecond
			if strings.HasSuffix(r.URL.Path, "/c-d") {
				reset = 8 * time.Second // past the deadline below, within MaxRateLimitWait
			}
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(reset).UnixMilli(), 10))
		case http.StatusCreated:
			w.Header().Set("Location", "/v1/users/u-1/calls/c-new")
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL + "/v1", UserID: "u-1", APIToken: "tok", APISecret: "sec", RetryBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	count := func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, h := range hits {
			if strings.HasSuffix(h, path) {
				n++
			}
		}
		return n
	}
	ctx := context.Background()

	script["/v1/users/u-1/calls"] = []int{429}
	start := time.Now()
	var cr created
	if err := c.do(ctx, request{op: "create_call", method: http.MethodPost, path: "/calls", body: struct{}{}}, &cr); err != nil || cr.ID != "c-new" {
		t.Fatalf("create after 429: %v %q", err, cr.ID)
	}
	if time.Since(start) < 25*time.Millisecond {
		t.Error("the 429 was not waited out")
	}

	script["/v1/users/u-1/calls/c-a"] = []int{503, 503, 503, 503}
	err = c.do(ctx, request{op: "transfer", method: http.MethodPost, path: "/calls/c-a", body: struct{}{}}, &cr)
	if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable || count("/calls/c-a") != 1 {
		t.Errorf("an unsafe request was retried or mis-kinded: %v, %d hits", err, count("/calls/c-a"))
	}
	if !unknownOutcome(err) {
		t.Error("a 503 on a transfer leaves its outcome unknown")
	}

	script["/v1/users/u-1/calls/c-b"] = []int{503, 200}
	if err := c.do(ctx, request{op: "get_call", method: http.MethodGet, path: "/calls/c-b", safe: true}, nil); err != nil || count("/calls/c-b") != 2 {
		t.Errorf("a safe request was not retried: %v, %d hits", err, count("/calls/c-b"))
	}

	script["/v1/users/u-1/calls/c-c"] = []int{400}
	err = c.do(ctx, request{op: "get_call", method: http.MethodGet, path: "/calls/c-c", safe: true}, nil)
	if orchestrator.KindOf(err) != orchestrator.KindProviderRejected || count("/calls/c-c") != 1 || unknownOutcome(err) {
		t.Errorf("a 400 was retried or mis-kinded: %v", err)
	}

	script["/v1/users/u-1/calls/c-d"] = []int{429, 429, 429}
	short, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	err = c.do(short, request{op: "get_call", method: http.MethodGet, path: "/calls/c-d", safe: true}, nil)
	if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable || count("/calls/c-d") != 1 || !strings.Contains(err.Error(), "beyond the step's deadline") {
		t.Errorf("a reset beyond the deadline must fail at once: %v, %d hits", err, count("/calls/c-d"))
	}

	script["/v1/users/u-1/calls"] = []int{200}
	err = c.do(ctx, request{op: "create_call", method: http.MethodPost, path: "/calls", body: struct{}{}}, &cr)
	if err == nil || !unknownOutcome(err) {
		t.Errorf("a create without Location: %v", err)
	}

	bad, _ := New(Config{BaseURL: srv.URL + "/v1", UserID: "u-1", APIToken: "tok", APISecret: "wrong", RetryBase: time.Millisecond})
	err = bad.do(ctx, request{op: "get_call", method: http.MethodGet, path: "/calls/c-e", safe: true}, nil)
	var ae *APIError
	if orchestrator.KindOf(err) != orchestrator.KindProviderAuth || !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("401: %v", err)
	}
}

func TestBridgeBodiesSendFalseAndEmpty(t *testing.T) {
	for _, tc := range []struct {
		body bridgeBody
		want string
	}{
		{bridgeBody{BridgeAudio: audioOn(false)}, `{"bridgeAudio":false}`},
		{bridgeBody{CallIDs: members()}, `{"callIds":[]}`},
		{bridgeBody{CallIDs: members("c-a"), BridgeAudio: audioOn(false)}, `{"bridgeAudio":false,"callIds":["c-a"]}`},
		{bridgeBody{}, `{}`},
	} {
		if got := mustJSON(t, tc.body); got != tc.want {
			t.Errorf("%+v encodes as %s, want %s", tc.body, got, tc.want)
		}
	}
	no := false
	got := mustJSON(t, transferBody{State: "transferring", TransferTo: "+1", RecordingEnabled: &no})
	if got != `{"state":"transferring","transferTo":"+1","recordingEnabled":false}` {
		t.Errorf("transfer body %s", got)
	}
}

func TestCallbackHandler(t *testing.T) {
	c, err := New(Config{UserID: "u-1", APIToken: "t", APISecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var notified []string
	h := http.StripPrefix("/callbacks/bandwidth", c.CallbackHandler(func(id string) {
		mu.Lock()
		notified = append(notified, id)
		mu.Unlock()
	}))
	id := orchestrator.NewID(time.Now())
	serve := func(method, target, body string) int {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	base := "/callbacks/bandwidth/"
	cases := []struct {
		name, method, target, body string
		want                       int
	}{
		{"hangup", http.MethodPost, base + id, `{"eventType":"hangup","callId":"c-1","cause":"USER_BUSY","callUri":"https://x/c-1","from":"+1","to":"+2","time":"2012-11-14T16:28:31.536Z","extra":{"a":1}}`, 200},
		{"answer", http.MethodPost, base + id, `{"eventType":"answer","callId":"c-2","callState":"active","tag":"` + id + `"}`, 200},
		{"timeout", http.MethodPost, base + id, `{"eventType":"timeout","callId":"c-3"}`, 200},
		{"GET callback", http.MethodGet, base + id + "?eventType=hangup&callId=c-4&cause=CALL_REJECTED", "", 200},
		{"bad transfer id", http.MethodPost, base + "tr_nope", `{"eventType":"hangup"}`, 400},
		{"path traversal", http.MethodPost, base + "..", `{"eventType":"hangup"}`, 400},
		{"no id", http.MethodPost, base, `{"eventType":"hangup"}`, 400},
		{"not JSON", http.MethodPost, base + id, `eventType=hangup`, 400},
		{"array", http.MethodPost, base + id, `[{"eventType":"hangup"}]`, 400},
		{"no event type", http.MethodPost, base + id, `{"callId":"c-1"}`, 400},
		{"bad call id", http.MethodPost, base + id, `{"eventType":"hangup","callId":"../../x"}`, 400},
		{"bad cause", http.MethodPost, base + id, `{"eventType":"hangup","callId":"c-1","cause":"<script>"}`, 400},
		{"too large", http.MethodPost, base + id, `{"eventType":"hangup","pad":"` + strings.Repeat("x", maxCallbackBody) + `"}`, 400},
		{"method", http.MethodPut, base + id, `{}`, 405},
	}
	for _, tc := range cases {
		if got := serve(tc.method, tc.target, tc.body); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	if len(notified) != 4 || notified[0] != id {
		t.Errorf("notified %v", notified)
	}
	for call, want := range map[string]string{"c-1": "USER_BUSY", "c-2": "", "c-3": "NO_ANSWER", "c-4": "CALL_REJECTED"} {
		if got := c.causes.get(id, call); got != want {
			t.Errorf("cause of %s = %q, want %q", call, got, want)
		}
	}
	// Causes are per transfer: another transfer naming the call sees none.
	if got := c.causes.get(orchestrator.NewID(time.Now()), "c-1"); got != "" {
		t.Errorf("cause leaked across transfers: %q", got)
	}
	// A later hangup's cause wins over a timeout's guess.
	serve(http.MethodPost, base+id, `{"eventType":"hangup","callId":"c-3","cause":"NORMAL_TEMPORARY_FAILURE"}`)
	if got := c.causes.get(id, "c-3"); got != "NORMAL_TEMPORARY_FAILURE" {
		t.Errorf("cause of c-3 = %q", got)
	}
	// The handler works without StripPrefix too (chi's Mount keeps the path).
	r := httptest.NewRequest(http.MethodPost, base+id, strings.NewReader(`{"eventType":"answer","callId":"c-9"}`))
	w := httptest.NewRecorder()
	c.CallbackHandler(nil).ServeHTTP(w, r)
	if w.Code != 200 {
		t.Errorf("full path: %d", w.Code)
	}
}

// What a callback tells one replica's client reaches another's as the
// note ReceiveCallback returns: applied in order there, the notes leave
// the second client knowing every call and cause the first knows. A
// malformed note (from another process) is refused and changes nothing.
func TestCallbackNotesCarryWhatACallbackTold(t *testing.T) {
	newClient := func() *Client {
		c, err := New(Config{UserID: "u-1", APIToken: "t", APISecret: "s"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	received, applied := newClient(), newClient()
	id := orchestrator.NewID(time.Now())
	events := []struct{ method, query, body, note string }{
		{http.MethodPost, "", `{"eventType":"answer","callId":"c-1","callState":"active"}`, "c-1"},
		{http.MethodPost, "", `{"eventType":"timeout","callId":"c-2"}`, "c-2/NO_ANSWER"},
		// A hangup's cause after a timeout does not replace it (mergeCause).
		{http.MethodPost, "", `{"eventType":"hangup","callId":"c-2","cause":"normal_clearing"}`, "c-2/NORMAL_CLEARING"},
		{http.MethodGet, "?eventType=hangup&callId=c-3&cause=USER_BUSY", "", "c-3/USER_BUSY"},
		{http.MethodPost, "", `{"eventType":"hangup","callId":"c-4"}`, "c-4"},
		{http.MethodPost, "", `{"eventType":"incomingcall"}`, ""},
	}
	for _, ev := range events {
		r := httptest.NewRequest(ev.method, "/callbacks/bandwidth/"+id+ev.query, strings.NewReader(ev.body))
		note, err := received.ReceiveCallback(r, id)
		if err != nil || note != ev.note {
			t.Fatalf("%s %s: note %q (%v), want %q", ev.method, ev.body+ev.query, note, err, ev.note)
		}
		if note == "" {
			continue
		}
		if err := applied.ApplyCallbackNote(id, note); err != nil {
			t.Fatalf("apply %q: %v", note, err)
		}
	}
	if !maps.Equal(applied.causes.m, received.causes.m) {
		t.Errorf("the notes taught %v; the callbacks taught %v", applied.causes.m, received.causes.m)
	}
	if got := applied.causes.get(id, "c-2"); got != causeNoAnswer {
		t.Errorf("cause of c-2 = %q, want %s", got, causeNoAnswer)
	}
	if got := applied.causes.leg(id); got != "c-4" {
		t.Errorf("leg = %q, want the last call named, c-4", got)
	}

	before := maps.Clone(applied.causes.m)
	for _, bad := range []struct{ id, note string }{
		{id, ""}, {id, "c-1/"}, {id, "../x"}, {id, "c-1/<script>"}, {id, "c-1/USER_BUSY/x"},
		{id, "c-1/user_busy"}, {id, "c-1 USER_BUSY"}, {"tr_nope", "c-1/USER_BUSY"}, {"", "c-1"},
	} {
		err := applied.ApplyCallbackNote(bad.id, bad.note)
		if orchestrator.KindOf(err) != orchestrator.KindInvalid {
			t.Errorf("note %q of %q: %v, want an error of kind invalid", bad.note, bad.id, err)
		}
	}
	if !maps.Equal(applied.causes.m, before) {
		t.Errorf("refused notes changed the book: %v, was %v", applied.causes.m, before)
	}
}

// The book is bounded by transfers, forgetting those least recently used
// first (a note written, or the transfer read), and by keys per transfer.
func TestCauseBookIsBounded(t *testing.T) {
	b := newCauseBook(3)
	for i := range 10 {
		b.put("tr-"+strconv.Itoa(i), "c-1", "USER_BUSY")
	}
	if len(b.m) != 3 || b.get("tr-9", "c-1") == "" || b.get("tr-6", "c-1") != "" {
		t.Errorf("book = %v", b.m)
	}
	b.put("tr-7", "c-1", "CALL_REJECTED") // used again: the last to go
	b.touch([]string{"tr-8"})             // read: used too
	b.put("tr-10", "c-1", "USER_BUSY")
	if len(b.m) != 3 || b.get("tr-9", "c-1") != "" || b.get("tr-7", "c-1") != "CALL_REJECTED" || b.get("tr-8", "c-1") == "" {
		t.Errorf("book = %v", b.m)
	}
	for i := range maxNotesPerTransfer + 5 {
		b.put("tr-10", "c-"+strconv.Itoa(i+2), "USER_BUSY")
	}
	if b.get("tr-10", "c-1") != "" || b.get("tr-10", "c-6") != "" || b.get("tr-10", "c-7") == "" || len(b.m) != 2+maxNotesPerTransfer {
		t.Errorf("%d keys; c-1 %q, c-6 %q, c-7 %q", len(b.m), b.get("tr-10", "c-1"), b.get("tr-10", "c-6"), b.get("tr-10", "c-7"))
	}
	// Reading more transfers at once than the book holds sizes it for them.
	b.touch([]string{"a", "b", "c", "d"})
	for i := range 8 {
		b.put("tr-x"+strconv.Itoa(i), "c-1", "USER_BUSY")
	}
	if n := b.lru.Len(); n != 8 {
		t.Errorf("%d transfers kept, want 8", n)
	}
}

func TestCallbackURL(t *testing.T) {
	c, err := New(Config{UserID: "u-1", APIToken: "t", APISecret: "s", PublicURL: "https://transferd.example.com/base/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.callbackURL("tr_X"); got != "https://transferd.example.com/base/callbacks/bandwidth/tr_X" {
		t.Errorf("callbackURL = %q", got)
	}
	if _, err := url.Parse(c.callbackURL("tr_X")); err != nil {
		t.Error(err)
	}
	// With a token, it follows the transfer id.
	c, err = New(Config{UserID: "u-1", APIToken: "t", APISecret: "s", PublicURL: "https://transferd.example.com/base/",
		CallbackToken: func(id string) string { return "acme.mac-of-" + id }})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.callbackURL("tr_X"); got != "https://transferd.example.com/base/callbacks/bandwidth/tr_X/acme.mac-of-tr_X" {
		t.Errorf("callbackURL with a token = %q", got)
	}
}

// A callbackUrl names its transfer whichever replica's public URL it
// starts with, and no other transfer; a process without a public URL
// looks for legs as polling does, and takes no callbackUrl for a
// transfer's.
func TestNamesTransfer(t *testing.T) {
	token := func(id string) string { return "acme.mac-of-" + id }
	c, err := New(Config{UserID: "u-1", APIToken: "t", APISecret: "s", PublicURL: "https://replica-2.example.com/",
		CallbackToken: token})
	if err != nil {
		t.Fatal(err)
	}
	for url, want := range map[string]bool{
		c.callbackURL("tr_X"): true,
		"https://replica-1.example.com/callbacks/bandwidth/tr_X/acme.mac-of-tr_X":     true,
		"http://10.0.0.7:8080/base/callbacks/bandwidth/tr_X/acme.mac-of-tr_X":         true,
		"https://replica-1.example.com/callbacks/bandwidth/tr_AX/acme.mac-of-tr_AX":   false,
		"https://replica-1.example.com/callbacks/bandwidth/tr_Y/acme.mac-of-tr_Y":     false,
		"https://replica-1.example.com/callbacks/bandwidth/tr_X/other.mac-of-tr_X":    false,
		"https://replica-1.example.com/callbacks/bandwidth/tr_X":                      false,
		"https://replica-1.example.com/callbacks/netsapiens/tr_X/acme.mac-of-tr_X":    false,
		"https://replica-1.example.com/callbacks/bandwidth/tr_X/acme.mac-of-tr_X?x=1": false,
		"": false,
	} {
		if got := c.namesTransfer("tr_X")(url); got != want {
			t.Errorf("namesTransfer(%q, tr_X) = %t, want %t", url, got, want)
		}
	}
	polling, err := New(Config{UserID: "u-1", APIToken: "t", APISecret: "s", CallbackToken: token})
	if err != nil {
		t.Fatal(err)
	}
	if polling.namesTransfer("tr_X")(c.callbackURL("tr_X")) {
		t.Error("a process without a public URL took a callbackUrl for its transfer's")
	}

	// While the callback secret is rotated, a token of the accepted secret
	// names the transfer too; it is never sent.
	rotating, err := New(Config{UserID: "u-1", APIToken: "t", APISecret: "s", PublicURL: "https://replica-2.example.com/",
		CallbackToken:          func(id string) string { return "acme.new-mac-of-" + id },
		AcceptedCallbackTokens: func(id string) []string { return []string{"acme.mac-of-" + id} }})
	if err != nil {
		t.Fatal(err)
	}
	if got := rotating.callbackURL("tr_X"); got != "https://replica-2.example.com/callbacks/bandwidth/tr_X/acme.new-mac-of-tr_X" {
		t.Errorf("callbackURL while rotating = %q, want the signing token's", got)
	}
	for url, want := range map[string]bool{
		rotating.callbackURL("tr_X"): true,
		c.callbackURL("tr_X"):        true, // the accepted secret's
		"https://replica-1.example.com/callbacks/bandwidth/tr_X/acme.other-mac-of-tr_X": false,
		"https://replica-1.example.com/callbacks/bandwidth/tr_Y/acme.mac-of-tr_Y":       false,
		"https://replica-1.example.com/callbacks/bandwidth/tr_Y/acme.mac-of-tr_X":       false,
	} {
		if got := rotating.namesTransfer("tr_X")(url); got != want {
			t.Errorf("while rotating, namesTransfer(%q, tr_X) = %t, want %t", url, got, want)
		}
	}
}

// bridgedBeforeEnd takes an ended caller's call for connected to the
// target only when the times show the target answered first and no
// whisper could have held the bridge back; anything it cannot tell is not.
func TestBridgedBeforeEnd(t *testing.T) {
	const to = "+15557100001"
	plain := &orchestrator.Transfer{Request: orchestrator.Request{Target: to}}
	whisper := &orchestrator.Transfer{Request: orchestrator.Request{Target: to,
		Whisper: &orchestrator.Whisper{Sentence: "hello"}}}
	hungUp := &orchestrator.Transfer{Request: orchestrator.Request{Target: to},
		Sent: orchestrator.Sent{Hangup: time.Date(2026, 12, 4, 9, 59, 59, 0, time.UTC)}}
	call := func(state, active, end, transferTo string) *apiCall {
		return &apiCall{State: flexString(state), ActiveTime: active, EndTime: end, TransferTo: transferTo}
	}
	cases := []struct {
		name string
		t    *orchestrator.Transfer
		a, b *apiCall
		want bool
	}{
		{"ended a second after the answer", plain,
			call("completed", "", "2026-12-04T10:00:01Z", to), call("completed", "2026-12-04T10:00:00Z", "", ""), true},
		{"ended after the answer, milliseconds", plain,
			call("completed", "", "2026-12-04T10:00:00.120Z", ""), call("completed", "2026-12-04T10:00:00.100Z", "", ""), true},
		{"B still reads answered", plain,
			call("completed", "", "2026-12-04T10:00:05Z", ""), call("active", "2026-12-04T10:00:00Z", "", ""), true},
		{"the same second", plain,
			call("completed", "", "2026-12-04T10:00:00Z", ""), call("completed", "2026-12-04T10:00:00Z", "", ""), false},
		{"ended before the answer", plain,
			call("completed", "", "2026-12-04T09:59:59Z", ""), call("completed", "2026-12-04T10:00:00Z", "", ""), false},
		{"B never answered", plain,
			call("completed", "", "2026-12-04T10:00:05Z", ""), call("completed", "", "2026-12-04T10:00:05Z", ""), false},
		{"no end time", plain,
			call("completed", "", "", ""), call("completed", "2026-12-04T10:00:00Z", "", ""), false},
		{"a time that does not parse", plain,
			call("completed", "", "Fri, 04 Dec 2026 10:00:05 GMT", ""), call("completed", "2026-12-04T10:00:00Z", "", ""), false},
		{"a whisper", whisper,
			call("completed", "", "2026-12-04T10:00:05Z", ""), call("completed", "2026-12-04T10:00:00Z", "", ""), false},
		{"a hang-up of ours sent", hungUp,
			call("completed", "", "2026-12-04T10:00:05Z", ""), call("completed", "2026-12-04T10:00:00Z", "", ""), false},
		{"A transferred elsewhere", plain,
			call("completed", "", "2026-12-04T10:00:05Z", "+15557109999"), call("completed", "2026-12-04T10:00:00Z", "", ""), false},
		{"A not read", plain, nil, call("completed", "2026-12-04T10:00:00Z", "", ""), false},
		{"B not read", plain, call("completed", "", "2026-12-04T10:00:05Z", ""), nil, false},
	}
	for _, c := range cases {
		if got := bridgedBeforeEnd(c.t, c.a, c.b); got != c.want {
			t.Errorf("%s: bridgedBeforeEnd = %v, want %v", c.name, got, c.want)
		}
	}
}

// withoutTokens cuts a callback URL's token wherever provider text quotes
// it, and leaves a callback URL without one (no CallbackToken) as it is.
func TestWithoutTokens(t *testing.T) {
	cases := []struct{ in, want string }{
		{"The callbackUrl `https://x.example/callbacks/bandwidth/tr_1/tok-AbC_9` is not a valid URL",
			"The callbackUrl `https://x.example/callbacks/bandwidth/tr_1/redacted` is not a valid URL"},
		{"bad url https://x.example/p/callbacks/bandwidth/tr_1/tok/more, try again",
			"bad url https://x.example/p/callbacks/bandwidth/tr_1/redacted try again"},
		{`"callbackUrl":"https://x.example/callbacks/bandwidth/tr_2/t0k"`,
			`"callbackUrl":"https://x.example/callbacks/bandwidth/tr_2/redacted"`},
		{"The callbackUrl `https://x.example/callbacks/bandwidth/tr_1` is not a valid URL",
			"The callbackUrl `https://x.example/callbacks/bandwidth/tr_1` is not a valid URL"},
		{"Only two calls are allowed in a bridge", "Only two calls are allowed in a bridge"},
	}
	for _, c := range cases {
		if got := withoutTokens(c.in); got != c.want {
			t.Errorf("withoutTokens(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if e := decodeError(400, []byte("<html>https://x.example/callbacks/bandwidth/tr_1/secret</html>")); strings.Contains(e.Message, "secret") {
		t.Errorf("a body that is not JSON kept the token: %q", e.Message)
	}
}

// withoutSecrets cuts each secret as given and escaped, longest first,
// and leaves secrets too short to protect anything alone.
func TestWithoutSecrets(t *testing.T) {
	secrets := []string{"tok-Ab+C/9", "tok-Ab+C/9:sec=1", "ab"}
	cases := []struct{ in, want string }{
		{"token tok-Ab+C/9 refused", "token redacted refused"},
		{"credentials tok-Ab+C/9:sec=1 refused", "credentials redacted refused"},
		{"credentials tok-Ab%2BC%2F9%3Asec%3D1 refused", "credentials redacted refused"},
		{"path /tok-Ab+C%2F9/", "path /redacted/"},
		{"about abc", "about abc"},
	}
	for _, c := range cases {
		if got := withoutSecrets(c.in, secrets); got != c.want {
			t.Errorf("withoutSecrets(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	e := decodeError(401, []byte(`{"code":"unauthorized","message":"token `+strings.Repeat("x", maxMessage-8)+`tok-Ab+C/9 refused"}`), secrets...)
	if strings.Contains(e.Message, "tok-") {
		t.Errorf("a secret at the bound was kept in part: %q", e.Message)
	}
}
