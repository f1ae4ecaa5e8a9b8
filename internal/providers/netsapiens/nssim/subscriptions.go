package nssim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Event subscriptions (notes §7, §11.4): POST/GET/PUT/DELETE /subscriptions. A subscription
// of model "call" is posted, on a tick of Config.SubscriptionLag (the server's DB poll, about
// 3 s), a JSON array with one object per session of its domain that changed since its last
// post, and the session's last object with "remove":"yes" once it ended.

// Subscription operations, as Fault.Operation and Request.Operation name them.
const (
	OpSubscriptionCreate = "subscription-create" // POST /subscriptions
	OpSubscriptionList   = "subscription-list"   // GET /subscriptions
	OpSubscriptionRead   = "subscription-read"   // GET /subscriptions/{id}
	OpSubscriptionUpdate = "subscription-update" // PUT /subscriptions/{id}
	OpSubscriptionDelete = "subscription-delete" // DELETE /subscriptions/{id}
)

// Values of Config.SubscriptionNames.
const (
	// NamesLegacy posts the underscore names real captures show (orig_callid, term_call_info,
	// "remove":"yes").
	NamesLegacy = "legacy"
	// NamesHyphenated posts the v2 read schema's names (call-orig-call-id, …) with
	// "call-remove":"yes", which at least one integration expects.
	NamesHyphenated = "hyphenated"
)

// Values of Config.SubscriptionShape.
const (
	// ShapeArray posts a tick's changes of a subscription as one JSON array of objects.
	ShapeArray = "array"
	// ShapeObject posts each changed session's object alone, one post each.
	ShapeObject = "object"
)

// subscriptionModels are the models the official schema enumerates.
var subscriptionModels = []string{"agent", "auditlog", "auditlog_lite", "call", "call_origid", "cdr", "message",
	"messagesession", "subscriber", "presence", "voicemail"}

// subscriptionErrorAfter is how many posts in a row must fail for the status to become
// "error" (the notes say "when posts fail over an interval" [G]).
const subscriptionErrorAfter = 3

// matchSubscription routes /subscriptions[/{id}]; the id rides in route.callID.
func matchSubscription(method string, rest []string) route {
	switch {
	case len(rest) == 0 && method == http.MethodGet:
		return route{op: OpSubscriptionList}
	case len(rest) == 0 && method == http.MethodPost:
		return route{op: OpSubscriptionCreate}
	case len(rest) == 1 && method == http.MethodGet:
		return route{op: OpSubscriptionRead, callID: rest[0]}
	case len(rest) == 1 && method == http.MethodPut:
		return route{op: OpSubscriptionUpdate, callID: rest[0]}
	case len(rest) == 1 && method == http.MethodDelete:
		return route{op: OpSubscriptionDelete, callID: rest[0]}
	}
	return route{}
}

func isSubscriptionOp(op string) bool { return strings.HasPrefix(op, "subscription-") }

// Subscription is one event subscription as the API renders it.
type Subscription struct {
	ID                  string `json:"id"`
	GeoSupport          string `json:"subscription-geo-support"`
	PostURL             string `json:"post-url"`
	Model               string `json:"model"`
	UserScope           string `json:"user-scope"`
	Reseller            string `json:"reseller"`
	Domain              string `json:"domain"`
	User                string `json:"user"`
	PreferredServer     string `json:"preferred-server"`
	CurrentActiveServer string `json:"current-active-server"`
	Status              string `json:"status"`
	ErrorCount          int    `json:"error-count"`
	PostsCount          int    `json:"posts-count"`
	Created             string `json:"subscription-creation-datetime"`
	Expires             string `json:"subscription-expires-datetime"`
}

// subscription is a Subscription with what its posts need.
type subscription struct {
	Subscription
	expires  time.Time
	failures int // posts failed in a row
	// last is the object last posted for each session, so that a tick posts only changes and
	// a removal repeats the session's last object.
	last map[string]ActiveCall
}

// subscriptionBody is a create or update request; pointers tell what was given.
type subscriptionBody struct {
	Model           *string `json:"model"`
	PostURL         *string `json:"post-url"`
	GeoSupport      *string `json:"subscription-geo-support"`
	Reseller        *string `json:"reseller"`
	Domain          *string `json:"domain"`
	User            *string `json:"user"`
	Expires         *string `json:"subscription-expires-datetime"`
	PreferredServer *string `json:"preferred-server"`
	ServerPreferred *string `json:"server_preferred"` // the spec's example spells it so
	ErrorCount      *int    `json:"error-count"`
	PostsCount      *int    `json:"posts-count"`
	// DELETE's required body.
	SubscriptionID *string `json:"subscription_id"`
}

func str(p *string, def string) string {
	if p == nil || *p == "" {
		return def
	}
	return *p
}

// parseDatetime reads "YYYY-MM-DD HH:MM:SS" (what writes use), in the zone
// Config.SubscriptionZone says [G], or RFC 3339.
func (s *Sim) parseDatetime(v string) (time.Time, bool) {
	if t, err := time.ParseInLocation(datetimeLayout, v, s.subscriptionZone()); err == nil {
		return t, true
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}

// subscriptionZone is Config.SubscriptionZone as a location.
func (s *Sim) subscriptionZone() *time.Location {
	if s.cfg.SubscriptionZone == 0 {
		return time.UTC
	}
	return time.FixedZone("", int(s.cfg.SubscriptionZone/time.Second))
}

// Subscriptions returns every subscription, oldest first.
func (s *Sim) Subscriptions() []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subscriptionsLocked()
}

func (s *Sim) subscriptionsLocked() []Subscription {
	s.expireSubscriptionsLocked()
	out := make([]Subscription, 0, len(s.subs))
	for _, id := range s.subOrder {
		if sub := s.subs[id]; sub != nil {
			out = append(out, sub.Subscription)
		}
	}
	return out
}

// renderedLocked is sub as the API answers it: its post-url as Config.SubscriptionPostURL
// renders it.
func (s *Sim) renderedLocked(sub Subscription) Subscription {
	if s.cfg.SubscriptionPostURL != PostURLCanonical {
		return sub
	}
	u, err := url.Parse(sub.PostURL)
	if err != nil {
		return sub
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
		u.Host = strings.TrimSuffix(u.Host, ":"+p)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	sub.PostURL = u.String()
	return sub
}

// expireSubscriptionsLocked removes subscriptions past their expiry.
func (s *Sim) expireSubscriptionsLocked() {
	now := s.cfg.Now()
	for id, sub := range s.subs {
		if now.After(sub.expires) {
			delete(s.subs, id)
		}
	}
	s.subOrder = slices.DeleteFunc(s.subOrder, func(id string) bool { return s.subs[id] == nil })
}

func (s *Sim) apiSubscription(w http.ResponseWriter, r *http.Request, rt route, scope KeyScope, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireSubscriptionsLocked()
	var in subscriptionBody
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			writeError(w, http.StatusBadRequest, "Invalid JSON body")
			return
		}
	}
	sub := s.subs[rt.callID]
	if rt.op != OpSubscriptionCreate && rt.op != OpSubscriptionList && (sub == nil || !scopeCovers(scope, sub.Domain)) {
		writeError(w, http.StatusNotFound, "Subscription not found")
		return
	}
	now := s.cfg.Now().UTC()
	switch rt.op {
	case OpSubscriptionList:
		out := []Subscription{}
		for _, v := range s.subscriptionsLocked() {
			if scopeCovers(scope, v.Domain) {
				out = append(out, s.renderedLocked(v))
			}
		}
		// Paged as the calls' listings are (Config.ListPageSize, Config.ListParams): the
		// notes say list endpoints honour limit and start in many controllers [C-code],
		// whether this one does, and by what page size, is [G].
		out = page(out, s.cfg.ListPageSize, s.cfg.ListParams, rt.query)
		if out == nil {
			out = []Subscription{}
		}
		writeJSON(w, http.StatusOK, out)
	case OpSubscriptionRead:
		writeJSON(w, http.StatusOK, s.renderedLocked(sub.Subscription))
	case OpSubscriptionCreate:
		model, domain, user := str(in.Model, ""), str(in.Domain, "*"), str(in.User, "*")
		if !slices.Contains(subscriptionModels, model) {
			writeError(w, http.StatusBadRequest, "model is required and must be one of "+strings.Join(subscriptionModels, ", "))
			return
		}
		if u, err := url.Parse(str(in.PostURL, "")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			writeError(w, http.StatusBadRequest, "post-url must be an absolute http(s) URL")
			return
		}
		if !scopeCovers(scope, domain) {
			// "*" needs Super User scope.
			writeError(w, http.StatusForbidden, "Domain not found or access denied")
			return
		}
		expires := now.AddDate(20, 0, 0) // an API key's default
		if in.Expires != nil {
			t, ok := s.parseDatetime(*in.Expires)
			if !ok {
				writeError(w, http.StatusBadRequest, "subscription-expires-datetime must be YYYY-MM-DD HH:MM:SS")
				return
			}
			expires = t
		}
		if s.matchedLocked(model, domain, user, *in.PostURL) {
			writeJSON(w, http.StatusConflict, map[string]string{"message": "Subscription ID already Exists or matching set of parameters already exists"})
			return
		}
		userScope := "Office Manager"
		if scope.Domain == "*" {
			userScope = "Super User"
		}
		// Omitted, geo support behaves as "no" whatever the docs say [C-code].
		sub = &subscription{Subscription: Subscription{ID: s.newSubscriptionIDLocked(), GeoSupport: str(in.GeoSupport, "no"),
			PostURL: *in.PostURL, Model: model, UserScope: userScope, Reseller: str(in.Reseller, "*"), Domain: domain, User: user,
			PreferredServer: str(in.PreferredServer, str(in.ServerPreferred, s.cfg.CoreServers[0])), Status: "pending",
			Created: now.Format(time.RFC3339)}, last: map[string]ActiveCall{}}
		s.setExpiresLocked(sub, expires)
		s.subscriptionWriteLocked(func() {
			// Applied late, a create matched by one applied meanwhile does nothing.
			if s.matchedLocked(model, domain, user, sub.PostURL) {
				return
			}
			s.subs[sub.ID] = sub
			s.subOrder = append(s.subOrder, sub.ID)
			s.startPosterLocked()
		})
		writeJSON(w, http.StatusOK, s.renderedLocked(sub.Subscription))
	case OpSubscriptionUpdate:
		// Filters are immutable [C-code]: only the post-url, expiry, geo, preferred server
		// and counter resets change.
		if in.Domain != nil && *in.Domain != sub.Domain || in.User != nil && *in.User != sub.User ||
			in.Reseller != nil && *in.Reseller != sub.Reseller || in.Model != nil && *in.Model != sub.Model {
			writeError(w, http.StatusBadRequest, "domain, user, reseller and model cannot be changed")
			return
		}
		if in.ErrorCount != nil && *in.ErrorCount != 0 || in.PostsCount != nil && *in.PostsCount != 0 {
			writeError(w, http.StatusBadRequest, "error-count and posts-count can only be reset to 0")
			return
		}
		if in.PostURL != nil {
			if u, err := url.Parse(*in.PostURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				writeError(w, http.StatusBadRequest, "post-url must be an absolute http(s) URL")
				return
			}
		}
		var expires time.Time
		if in.Expires != nil {
			t, ok := s.parseDatetime(*in.Expires)
			if !ok {
				writeError(w, http.StatusBadRequest, "subscription-expires-datetime must be YYYY-MM-DD HH:MM:SS")
				return
			}
			expires = t
		}
		s.subscriptionWriteLocked(func() {
			if s.subs[sub.ID] != sub {
				return // deleted or expired meanwhile
			}
			if in.PostURL != nil {
				sub.PostURL = *in.PostURL
			}
			if in.Expires != nil {
				s.setExpiresLocked(sub, expires)
			}
			sub.GeoSupport = str(in.GeoSupport, sub.GeoSupport)
			sub.PreferredServer = str(in.PreferredServer, sub.PreferredServer)
			if in.ErrorCount != nil {
				sub.ErrorCount = 0
			}
			if in.PostsCount != nil {
				sub.PostsCount = 0
			}
		})
		writeAccepted(w)
	case OpSubscriptionDelete:
		// The body is required [C-doc].
		if in.SubscriptionID == nil || *in.SubscriptionID != sub.ID {
			writeError(w, http.StatusBadRequest, "subscription_id is required in the body and must match the path")
			return
		}
		s.subscriptionWriteLocked(func() {
			if s.subs[sub.ID] != sub {
				return
			}
			delete(s.subs, sub.ID)
			s.subOrder = slices.DeleteFunc(s.subOrder, func(id string) bool { return id == sub.ID })
		})
		writeAccepted(w)
	}
	s.notifyLocked()
}

// matchedLocked reports whether a subscription exists that a create of model, domain, user
// and postURL matches (a 409).
func (s *Sim) matchedLocked(model, domain, user, postURL string) bool {
	for _, other := range s.subs {
		if other.Model == model && other.Domain == domain && other.User == user &&
			(other.PostURL == postURL || s.cfg.SubscriptionMatchIgnoresPostURL) {
			return true
		}
	}
	return false
}

// subscriptionWriteLocked applies a subscription write now, or after
// Config.SubscriptionWriteDelay, after every write answered before it.
func (s *Sim) subscriptionWriteLocked(fn func()) {
	d := s.cfg.SubscriptionWriteDelay
	if d <= 0 {
		fn()
		return
	}
	if s.closed {
		return
	}
	s.subWrites = append(s.subWrites, &queuedAction{due: time.Now().Add(d), fn: fn})
	s.afterLocked(d, s.applySubscriptionWritesLocked)
}

// applySubscriptionWritesLocked applies, in order, the waiting subscription writes whose
// time has come.
func (s *Sim) applySubscriptionWritesLocked() {
	now := time.Now()
	for len(s.subWrites) > 0 && !s.subWrites[0].due.After(now) {
		s.applyFirstSubscriptionWriteLocked()
	}
}

func (s *Sim) applyFirstSubscriptionWriteLocked() {
	a := s.subWrites[0]
	s.subWrites[0] = nil
	s.subWrites = s.subWrites[1:]
	s.expireSubscriptionsLocked()
	a.fn()
}

// ApplySubscriptionWrites applies every subscription write waiting for its
// Config.SubscriptionWriteDelay now, in the order they were answered: a test holds writes
// with a long delay and lets the PBX catch up when it wants to.
func (s *Sim) ApplySubscriptionWrites() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.subWrites) > 0 {
		s.applyFirstSubscriptionWriteLocked()
	}
	s.notifyLocked()
}

// scopeCovers reports whether a credential may address a subscription's domain.
func scopeCovers(scope KeyScope, domain string) bool {
	return scope.Domain == "*" || strings.EqualFold(scope.Domain, domain)
}

func (s *Sim) setExpiresLocked(sub *subscription, t time.Time) {
	if s.cfg.SubscriptionExpiryMinutes {
		t = t.Truncate(time.Minute)
	}
	sub.expires = t.UTC()
	// Reads return ISO-8601 with an offset; writes use YYYY-MM-DD HH:MM:SS [C-code].
	sub.Expires = sub.expires.In(s.subscriptionZone()).Format(time.RFC3339)
}

func (s *Sim) newSubscriptionIDLocked() string {
	s.idSeq++
	return fmt.Sprintf("%016x%016x", s.idSeq, s.rng.Uint64())
}

// startPosterLocked starts the delivery loop with the first subscription.
func (s *Sim) startPosterLocked() {
	if s.posting || s.closed {
		return
	}
	s.posting = true
	ctx, cancel := context.WithCancel(context.Background())
	s.stopPoster = cancel
	go s.postLoop(ctx)
}

// postLoop posts every subscription's changes on each tick until Close.
func (s *Sim) postLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SubscriptionLag)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.PostSubscriptions(ctx)
	}
}

// posting is one post to make: a subscription's changes.
type posting struct {
	id, url string
	body    []byte
	n       int
}

// PostSubscriptions makes one delivery tick now: every subscription is posted what changed
// in its domain since its last post. The loop calls it every SubscriptionLag; tests may call
// it to deliver without waiting.
func (s *Sim) PostSubscriptions(ctx context.Context) {
	s.mu.Lock()
	s.expireSubscriptionsLocked()
	chaos := s.cfg.SubscriptionChaos // SetGuesses may change it: read under mu
	var posts []posting
	for _, id := range s.subOrder {
		sub := s.subs[id]
		if sub.Model != "call" {
			continue // the other models' sources are not simulated
		}
		objs := s.changesLocked(sub)
		if len(objs) == 0 {
			continue
		}
		if chaos.Reorder {
			slices.Reverse(objs)
		}
		// One post of the array, or (ShapeObject) one per object.
		var batch []posting
		if s.cfg.SubscriptionShape == ShapeObject {
			for _, o := range objs {
				body, _ := json.Marshal(o)
				batch = append(batch, posting{id: id, url: sub.PostURL, body: body, n: 1})
			}
		} else {
			body, _ := json.Marshal(objs)
			batch = append(batch, posting{id: id, url: sub.PostURL, body: body, n: len(objs)})
		}
		for _, p := range batch {
			posts = append(posts, p)
			if chaos.Duplicate {
				posts = append(posts, p)
			}
		}
	}
	s.mu.Unlock()
	if chaos.Reorder {
		slices.Reverse(posts)
	}
	for _, p := range posts {
		ok := s.post(ctx, p)
		s.mu.Lock()
		if sub := s.subs[p.id]; sub != nil {
			sub.PostsCount++
			if ok {
				sub.failures, sub.Status = 0, "active"
			} else {
				sub.ErrorCount++
				sub.failures++
				if sub.failures >= subscriptionErrorAfter {
					sub.Status = "error"
				}
			}
		}
		s.notifyLocked()
		s.mu.Unlock()
	}
}

// post sends one array (or one object, ShapeObject); a network error or a status above 302
// is a failed post [C-doc]. Nothing is resent: no replay is documented, and the next tick posts only newer changes.
func (s *Sim) post(ctx context.Context, p posting) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(p.body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Correlation-ID", p.id)
	client := s.cfg.SubscriptionClient
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode <= 302
}

// changesLocked returns the objects to post to sub and remembers them as posted.
func (s *Sim) changesLocked(sub *subscription) []map[string]any {
	live := map[string]bool{}
	var out []map[string]any
	for _, sess := range s.sortedLocked(sub.Domain, func(x *session) bool {
		return x.visibleIn(sub.Domain) && (sub.User == "*" || x.involves(x.domain, sub.User))
	}) {
		rec := sess.record(s.render)
		live[rec.SessionID] = true
		if prev, ok := sub.last[rec.SessionID]; ok && prev == rec {
			continue
		}
		sub.last[rec.SessionID] = rec
		out = append(out, s.eventObject(rec, false))
	}
	for id, rec := range sub.last {
		if !live[id] {
			out = append(out, s.eventObject(rec, true))
			delete(sub.last, id)
		}
	}
	return out
}

// eventObject renders a session as a subscription posts it.
func (s *Sim) eventObject(c ActiveCall, removed bool) map[string]any {
	if s.cfg.SubscriptionNames == NamesHyphenated {
		var m map[string]any
		b, _ := json.Marshal(c)
		_ = json.Unmarshal(b, &m)
		if removed {
			m["call-remove"] = "yes"
		}
		return m
	}
	m := map[string]any{
		"hostname": c.CoreServer, "sessionId": c.SessionID,
		"orig_callid": c.OrigCallID, "orig_match": c.OrigMatchURI, "orig_sub": c.OrigUser, "orig_user": c.OrigUser,
		"orig_domain": c.OrigDomain, "orig_from_uri": c.OrigURI, "orig_from_name": c.OrigName, "orig_name": c.OrigName,
		"ani": c.CallerIDNumber, "dnis": c.DialedNumber, "orig_req_user": c.DialedNumber,
		"by_action": c.ByAction, "by_sub": c.ByUser, "by_domain": c.ByDomain, "by_callid": c.ByCallID,
		"term_callid": c.TermCallID, "term_sub": c.TermUser, "term_user": c.TermUser, "term_domain": c.TermDomain,
		"term_uri": c.TermURI, "time_start": c.StartDatetime, "time_begin": c.StartDatetime, "time_answer": c.AnswerDatetime,
		"orig_call_info": c.OrigInfo, "term_call_info": c.TermInfo, "media": c.AudioCodec,
	}
	if removed {
		m["remove"] = "yes"
	}
	return m
}
