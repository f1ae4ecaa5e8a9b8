package bwsim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"
)

// This file delivers call events (notes §9, §12.6): one attempt on the call's callbackUrl,
// then one on its fallbackUrl if that failed; further retries are undocumented, so there are
// none unless Config.CallbackRetries asks for them. A call's events are delivered in order, one at a time; different calls' events are
// delivered concurrently.

// callbackUserAgent stands in for "BandwidthAPI/v1 ({CURRENT_BUILD_TIMESTAMP})".
const callbackUserAgent = "BandwidthAPI/v1 (sim)"

// callbackEvent is the v1 REST event payload, field names as documented.
type callbackEvent struct {
	EventType string `json:"eventType"`
	CallID    string `json:"callId"`
	CallURI   string `json:"callUri"`
	From      string `json:"from"`
	To        string `json:"to"`
	CallState string `json:"callState"`
	Cause     string `json:"cause,omitempty"`
	Tag       string `json:"tag,omitempty"`
	Time      string `json:"time"`
}

// query renders the event as the query parameters of callbackHttpMethod GET.
func (e callbackEvent) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{
		"eventType": e.EventType, "callId": e.CallID, "callUri": e.CallURI, "from": e.From,
		"to": e.To, "callState": e.CallState, "cause": e.Cause, "tag": e.Tag, "time": e.Time,
	} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

type delivery struct {
	event    callbackEvent
	body     []byte
	url      string
	fallback string
	method   string
	timeout  time.Duration
	// retries is CallbackRetries as the event was emitted: a guess, switched at run
	// time under mu, which deliver does not hold.
	retries int
}

type cbQueue struct{ items []delivery }

// emitLocked records the event in the call's history and queues it for the call's
// callbackUrl, if any.
func (s *Sim) emitLocked(c *call, eventType, cause string) {
	s.recordEventLocked(c, eventType, cause)
	if c.CallbackURL == "" || s.closed {
		return
	}
	// callState: "active" for incomingcall (sic, as documented) and answer, "completed" for
	// hangup (the docs' reject example) and timeout.
	state := StateCompleted
	if eventType == "answer" || eventType == "incomingcall" {
		state = StateActive
	}
	ev := callbackEvent{
		EventType: eventType,
		CallID:    c.ID,
		CallURI:   s.callbackBaseLocked() + "/users/" + s.cfg.UserID + "/calls/" + c.ID,
		From:      c.From,
		To:        c.To,
		CallState: state,
		Cause:     cause,
		Tag:       c.Tag,
		Time:      formatEventTime(s.now()),
	}
	body, _ := json.Marshal(ev) // strings only: cannot fail
	d := delivery{event: ev, body: body, url: c.CallbackURL, fallback: c.FallbackURL, method: c.CallbackHTTPMethod, timeout: defaultCallbackTimeout,
		retries: s.cfg.CallbackRetries}
	if c.CallbackTimeoutMS > 0 {
		d.timeout = time.Duration(c.CallbackTimeoutMS) * time.Millisecond
	}
	q := s.queues[c.ID]
	if q == nil {
		q = &cbQueue{}
		s.queues[c.ID] = q
		s.wg.Add(1)
		go s.runQueue(s.ctx, c.ID, q)
	}
	q.items = append(q.items, d)
	s.pending++
}

// runQueue delivers a call's queued events in order and exits when the queue is empty or was
// dropped by Reset or Close.
func (s *Sim) runQueue(ctx context.Context, callID string, q *cbQueue) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if s.queues[callID] != q || len(q.items) == 0 {
			if s.queues[callID] == q {
				delete(s.queues, callID)
			}
			s.mu.Unlock()
			return
		}
		d := q.items[0]
		q.items = q.items[1:]
		gen := s.gen
		s.mu.Unlock()

		recs := s.deliver(ctx, d)

		s.mu.Lock()
		if s.gen == gen {
			for _, rec := range recs {
				s.callbacks = appendCapped(s.callbacks, rec, s.cfg.MaxRecords)
			}
		}
		s.pending--
		s.notifyLocked()
		s.mu.Unlock()
	}
}

// deliver makes the attempts for one event and returns their records.
func (s *Sim) deliver(ctx context.Context, d delivery) []Callback {
	recs := []Callback{s.attempt(ctx, d, d.url)}
	if !recs[0].Delivered() && d.fallback != "" {
		second := s.attempt(ctx, d, d.fallback)
		second.Fallback = true
		recs = append(recs, second)
	}
	for range d.retries {
		if recs[len(recs)-1].Delivered() || ctx.Err() != nil {
			break
		}
		retry := s.attempt(ctx, d, d.url)
		retry.Retry = true
		recs = append(recs, retry)
	}
	return recs
}

func (s *Sim) attempt(ctx context.Context, d delivery, target string) Callback {
	rec := Callback{
		URL:       redact(target),
		Method:    http.MethodPost,
		CallID:    d.event.CallID,
		EventType: d.event.EventType,
		Event:     json.RawMessage(d.body),
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var req *http.Request
	var err error
	if d.method == http.MethodGet {
		rec.Method = http.MethodGet
		var u *url.URL
		if u, err = url.Parse(target); err == nil {
			q := u.Query()
			for k, v := range d.event.query() {
				q[k] = v
			}
			u.RawQuery = q.Encode()
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(d.body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json; charset=utf-8")
		}
	}
	if err == nil {
		// Userinfo in the URL becomes HTTP Basic auth (net/http does it), as documented.
		req.Header.Set("User-Agent", callbackUserAgent)
		var resp *http.Response
		if resp, err = s.cfg.CallbackClient.Do(req); err == nil {
			rec.Status = resp.StatusCode
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) // the body is ignored
			_ = resp.Body.Close()
		}
	}
	if err != nil {
		rec.Error = err.Error() // net/http strips the password from URLs in its errors
	}
	rec.Time = s.now()
	return rec
}

// redact hides a password in the URL's userinfo.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
