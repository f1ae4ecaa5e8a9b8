package netsapiens

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/apiclient"
)

// Event subscriptions (notes §7): while some transfer watches a domain,
// the domain has a subscription of model "call" posting to transferd's
// callback route, so that a change (a consult answered, a session
// removed) makes the domain's watcher read the listing at once instead
// of at its next poll. The listing stays the truth: a delivery only
// hastens it, because deliveries lag by seconds, may come twice or out of
// order, and carry no signature beyond the URL's token.

// Defaults of the subscription settings.
const (
	// DefaultSubscriptionTTL is the expiry asked for. An explicit expiry,
	// not the API key's 20 years, so that a subscription a killed process
	// could not delete ends by itself (within a day: see expiry); it is
	// renewed at half its life.
	DefaultSubscriptionTTL = time.Hour
	// DefaultSubscriptionLinger is how long a subscription outlives the
	// last watch of its domain, so that consults one after another in a
	// quiet domain do not create and delete one each.
	DefaultSubscriptionLinger = 30 * time.Second
)

// subscriptionDatetime is how writes spell a datetime (reads answer
// ISO-8601).
const subscriptionDatetime = "2006-01-02 15:04:05"

// renewSlack is how late a live process's renewal may come after half its
// TTL (its reads and PUT, each with its retries, and a failed try's
// back-off), and how far the adoption's estimate of it may be off (the
// two processes' expiries end on seconds of their own: expiry).
const renewSlack = 2 * time.Minute

// markTTL is the shortest TTL whose expiries end on a second of the
// process's own (see expiry): one of these a minute, renewals half a TTL
// apart must fall in different minutes to move the expiry.
const markTTL = 2 * time.Minute

// maxPush bounds how much further a write's expiry goes to read unlike
// the one it replaces on a PBX keeping minutes (see write): a minute for
// each process writing in one minute.
const maxPush = 5 * time.Minute

// requestTimeout bounds one subscription request with its retries. The
// requests do not end with Close: a create in flight must be known to be
// deleted.
const requestTimeout = 30 * time.Second

// subscriber keeps one subscription per watched domain. It may be shared
// by the clients of one account built one after another (a reload of the
// tenants file that changed a budget, say: TakeSubscriptions), which
// would otherwise both keep the one subscription the PBX lets an account
// have per post-url, and the old one delete it under the new.
type subscriber struct {
	// c is the client requests are made with: the newest of those that
	// share the subscriber (its secrets and budget are the account's in
	// force).
	c   atomic.Pointer[Client]
	url func(domain string) string
	// accepted gives the post-urls of the accepted callback secrets
	// (Config.AcceptedEventURLs); nil, none.
	accepted func(domain string) []string
	ttl      time.Duration
	linger   time.Duration
	log      zerolog.Logger
	ctx      context.Context
	stop     context.CancelFunc
	// now is the clock the expiries written are reckoned from, and the
	// times of other processes' writes (sharedAt, makerAt) and their ages.
	now func() time.Time
	// mark is the second of the minute every expiry this process writes
	// ends on, drawn at random (-1 none: a TTL under markTTL), and marked
	// says a read has shown one ending on it: the PBX keeps the seconds
	// written (see expiry).
	mark   int
	marked atomic.Bool

	mu      sync.Mutex
	domains map[string]*domainSub
	// left is what this process knew of each subscription it adopted
	// and a keeper let go of without deleting it (delete), by domain,
	// until the domain's next create (see create).
	left map[string]leftSub
	// clients are those sharing the subscriber and not closed; the last
	// one's Close deletes the subscriptions.
	clients map[*Client]bool
	closed  bool
	wg      sync.WaitGroup
}

// domainSub is the state of one domain's subscription, owned by its
// goroutine except for watchers, which the engine's calls set.
type domainSub struct {
	// watchers are the clients whose watcher of the domain runs: the
	// domain is watched while one does.
	watchers map[*Client]bool
	wake     chan struct{}
	id       string // the subscription's id once created or adopted
	// written is the subscription's expiry as the PBX renders it after
	// this process's last write of it ("" unknown), and sharedAt when a
	// read last showed an expiry this process had not written: another
	// process posting to the same post-url renewed it, and uses it
	// (delete).
	written  string
	sharedAt time.Time
	// adopted says the subscription was another process's when this
	// one's create adopted it (a 409 for the same post-url), and no
	// renewal of this one has looked for that process's writes since;
	// makerAt is when that process wrote it last, as the adoption's reads
	// tell, or as this process knew when it let go of the subscription
	// before (zero unknown): see create, delete.
	adopted bool
	makerAt time.Time
	// adoptedAt is when this process adopted the subscription (on the
	// subscriber's clock): the maker wrote last no later than then, when
	// makerAt is unknown (see renew).
	adoptedAt time.Time
}

// leftSub is an adopted subscription a keeper left to its maker (delete):
// its id, this process's last write as a read renders it (written, ""
// unknown), and when the maker wrote it last, as this process knew then
// (makerAt, zero unknown).
type leftSub struct {
	id, written string
	makerAt     time.Time
}

func newSubscriber(c *Client, cfg Config) *subscriber {
	ctx, stop := context.WithCancel(context.Background())
	s := &subscriber{url: cfg.EventURL, accepted: cfg.AcceptedEventURLs, ttl: cfg.SubscriptionTTL, linger: cfg.SubscriptionLinger,
		log: cfg.Log.With().Str("component", "netsapiens-subscriptions").Logger(), ctx: ctx, stop: stop,
		domains: map[string]*domainSub{}, left: map[string]leftSub{}, clients: map[*Client]bool{c: true}, now: time.Now, mark: -1}
	s.c.Store(c)
	if s.ttl <= 0 {
		s.ttl = DefaultSubscriptionTTL
	}
	if s.linger <= 0 {
		s.linger = DefaultSubscriptionLinger
	}
	if s.ttl >= markTTL {
		s.mark = rand.IntN(60)
	}
	return s
}

// WatchStarted implements orchestrator.ViewWatcher: the domain (the
// watch key) gets a subscription unless it has one. It does not block.
func (c *Client) WatchStarted(key string) {
	if c.subs != nil {
		c.subs.set(c, key, true)
	}
}

// WatchStopped implements orchestrator.ViewWatcher: the domain's
// subscription is deleted after the linger unless a watch starts again.
func (c *Client) WatchStopped(key string) {
	if c.subs != nil {
		c.subs.set(c, key, false)
	}
}

var _ orchestrator.ViewWatcher = (*Client)(nil)

func (s *subscriber) set(c *Client, domain string, watched bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.clients[c] {
		return
	}
	d := s.domains[domain]
	if d == nil {
		if !watched {
			return
		}
		d = &domainSub{watchers: map[*Client]bool{}, wake: make(chan struct{}, 1)}
		s.domains[domain] = d
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.keep(domain, d)
		}()
	}
	if watched {
		d.watchers[c] = true
	} else {
		delete(d.watchers, c)
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) isWatched(domain string, d *domainSub) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(d.watchers) > 0
}

// keep runs while domain is watched or its subscription lingers: it
// creates the subscription, renews it at half its life, and deletes it
// once the domain has been unwatched for the linger. It leaves the
// subscription in place when the subscriber closes (Close deletes it).
func (s *subscriber) keep(domain string, d *domainSub) {
	log := s.log.With().Str("domain", domain).Logger()
	var (
		renewAt  time.Time
		failures int
	)
	for {
		var wait time.Duration
		switch watched := s.isWatched(domain, d); {
		case watched && d.id == "":
			id, written, makerAt, adopted, err := s.create(domain)
			if err != nil {
				failures++
				wait = apiclient.Backoff(failures, time.Second, time.Minute)
				log.Warn().Err(err).Dur("retry_in_ms", wait).Msg("cannot subscribe to the domain's call events; its listing is polled meanwhile")
				break
			}
			failures = 0
			d.id, d.written, d.sharedAt, d.adopted, d.makerAt, renewAt = id, written, time.Time{}, adopted, makerAt, time.Now().Add(s.ttl/2)
			d.adoptedAt = time.Time{}
			if adopted {
				d.adoptedAt = s.now()
			}
			log.Info().Str("subscription", id).Msg("subscribed to the domain's call events")
			wait = s.ttl / 2
		case watched:
			if left := time.Until(renewAt); left > 0 {
				wait = left
				break
			}
			err := s.renew(domain, d)
			switch {
			case orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
				// Expired or deleted by someone else: make a new one.
				log.Info().Str("subscription", d.id).Msg("the subscription is gone; subscribing again")
				d.id = ""
				continue
			case err != nil:
				failures++
				wait = apiclient.Backoff(failures, time.Second, time.Minute)
				log.Warn().Err(err).Str("subscription", d.id).Msg("cannot renew the subscription")
			default:
				failures = 0
				renewAt = time.Now().Add(s.ttl / 2)
				wait = s.ttl / 2
			}
		default:
			// Unwatched: linger, then delete, unless watched again. The
			// entry stays in the map until deleted, so that a watch
			// starting meanwhile finds it instead of racing a new one.
			if d.id != "" {
				if !s.sleep(d, s.linger) {
					return
				}
				if s.isWatched(domain, d) {
					continue
				}
				if err := s.delete(context.Background(), domain, d); err != nil {
					log.Warn().Err(err).Str("subscription", d.id).Msg("cannot delete the subscription; it expires by itself")
				}
				d.id = ""
			}
			s.mu.Lock()
			if len(d.watchers) > 0 {
				s.mu.Unlock()
				continue
			}
			delete(s.domains, domain)
			s.mu.Unlock()
			return
		}
		if !s.sleep(d, wait) {
			return
		}
	}
}

// sleep waits for d, or for a change of d's watched flag; false when the
// subscriber closes.
func (s *subscriber) sleep(d *domainSub, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C:
	case <-d.wake:
	}
	return true
}

// subscriptionWire is a subscription as the API answers it.
type subscriptionWire struct {
	ID      flexString `json:"id"`
	Model   string     `json:"model"`
	Domain  string     `json:"domain"`
	User    string     `json:"user"`
	PostURL string     `json:"post-url"`
	Expires string     `json:"subscription-expires-datetime"`
}

// easternmost is how far ahead of UTC the easternmost zone is (UTC+14).
const easternmost = 14 * time.Hour

// expiry is the subscription-expires-datetime a create or renewal writes:
// "YYYY-MM-DD HH:MM:SS", with no zone. Reads answer it with an offset
// [C-code]; in which zone a write is read is not documented [guess]. In
// UTC a TTL ahead, a PBX reading it in a zone east of UTC had it expire
// that much sooner: at UTC+1 as it was made, at UTC+2 an hour before, and
// no post ever came (the domain polled only), the keeper renewing at half
// its life a subscription the PBX had dropped. So it is written a TTL
// ahead in the easternmost zone: it lasts at least the TTL wherever it is
// read, and at most a TTL and 26 hours (UTC-12). A subscription a killed
// process leaves then outlives it by up to a day rather than an hour;
// the next process adopts it (a 409), and its posts only hasten readings.
//
// It ends on the second of the minute this process drew (mark), up to a
// minute more. Two processes sharing a subscription (see delete) tell
// each other's writes by the expiry read back; writes of one TTL within
// one second wrote the same one, and a replica adopting the subscription
// in the second its maker wrote it (a restart overlap, replicas starting
// together) went unseen: each took the other's write for its own, and the
// first to let go deleted it under the other. Ending on seconds of their
// own, their writes differ whenever they were made (unless they drew the
// same second, one in sixty), and a read shows whose write it is even
// before this process knows how the PBX renders its own, as on a PBX
// applying writes late (foreign). A TTL under markTTL (tests) has no
// mark: its renewals would write the same expiry within a minute.
func (s *subscriber) expiry() string {
	e, _ := s.expiryAt(s.now())
	return e
}

// expiryAt is the expiry written at now, and how much later than a TTL
// ahead at UTC+14 it ends (up to a minute, less the second's fraction).
func (s *subscriber) expiryAt(now time.Time) (string, time.Duration) {
	least := now.UTC().Add(s.ttl + easternmost)
	t := least.Truncate(time.Second)
	if s.mark >= 0 {
		t = t.Add(time.Duration((s.mark-t.Second()+60)%60) * time.Second)
	}
	return t.Format(subscriptionDatetime), t.Sub(least)
}

// observe learns from an expiry as a read renders it whether the PBX keeps
// the seconds written: one ending on mark is this process's write (or,
// one in sixty, another's ending there too).
func (s *subscriber) observe(expires string) {
	if t, ok := parseExpiry(expires); ok && s.mark >= 0 && t.Second() == s.mark {
		s.marked.Store(true)
	}
}

// foreign says a read of d's subscription showing expires shows another
// process's write: an expiry other than this process's last write (when
// known), or, once the PBX is known to keep the seconds written
// (marked), one not ending on this process's second. The latter needs
// no read after a write of this process, which a PBX applying writes
// late answers as it was before the write.
func (s *subscriber) foreign(d *domainSub, expires string) bool {
	if expires == "" {
		return false
	}
	if d.written != "" && expires != d.written {
		return true
	}
	t, ok := parseExpiry(expires)
	return ok && s.mark >= 0 && s.marked.Load() && t.Second() != s.mark
}

// create subscribes the domain; a 409 (ours exists, left by a process
// that was killed or by another replica with the same public URL) adopts
// the matching subscription and renews it. written is the expiry as a
// read renders it after this process's write ("" unknown: see renew);
// adopted says it was adopted from another process posting to the same
// post-url, makerAt when that process wrote it last (zero unknown; see
// delete).
func (s *subscriber) create(domain string) (id, written string, makerAt time.Time, adopted bool, err error) {
	prev, hadPrev := s.takeLeft(domain)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	postURL := s.url(domain)
	body := map[string]string{"model": "call", "domain": domain, "user": "*", "post-url": postURL,
		// Omitted, geo support behaves as "no" (notes §7.1).
		"subscription-geo-support": "yes", "subscription-expires-datetime": s.expiry()}
	var out subscriptionWire
	err = s.c.Load().do(ctx, request{op: "subscription_create", method: http.MethodPost, path: "/subscriptions", body: body}, &out)
	var e *orchestrator.Error
	if errors.As(err, &e) && e.Evidence != nil && e.Evidence.Status == http.StatusConflict {
		id, moved, err := s.find(ctx, domain, postURL)
		if err != nil {
			return "", "", time.Time{}, false, err
		}
		// One posting with a token of a secret only accepted now (made
		// before a rotation of the callback secret) is moved to this
		// post-url: it kept the old token, and its posts were refused
		// once the old secret was no longer accepted, while the keeper
		// took the domain for subscribed (a PBX whose 409 leaves the
		// post-url out of its match refuses a second subscription).
		//
		// The adoption's write is learned as a renewal's is (written):
		// unknown, the maker's next renewal, read by this process's
		// first renewal, was taken for nothing, and the subscription for
		// this process's alone from then on.
		//
		// The maker's last write is told by the expiry it wrote (read
		// before this write) against this one's (read after), both
		// rendered alike: each is its write's time plus a TTL and the
		// same offset (see expiry), whatever the zone the PBX reads them
		// in. Assuming the maker's TTL is this process's (replicas share
		// their configuration), the maker wrote it last this write's time
		// less their difference: a maker gone for longer than half a TTL
		// (a killed process's, or one whose expiry was written by hand)
		// is not waited for. Each expiry is rounded up to its writer's
		// second; this one's rounding, known, is left out of the
		// difference: it made the maker look up to a minute older, half
		// of renewSlack. The maker's, up to a minute, makes it look
		// younger, and a killed maker's subscription waited for that
		// much longer.
		at := s.now()
		before, _, written, up, err := s.write(domain, id, moved, at)
		if err != nil {
			return "", "", time.Time{}, false, err
		}
		if b, ok := parseExpiry(before); ok && written != "" {
			if w, ok := parseExpiry(written); ok {
				makerAt = at.Add(-(w.Sub(b) - up))
			}
		}
		// The subscription this process adopted and let go of before
		// (delete), read as its own last write left it: its maker has
		// not written since, and wrote last when this process knew then.
		// The estimate above is this process's own last write's time:
		// taken for the maker's, each new watch of the domain moved it
		// on, and a process whose watches never lasted half a TTL (short
		// transfers, a linger of seconds) never deleted the
		// subscription, at a linger or at its end, long after its maker
		// was gone.
		if hadPrev && prev.id == id && before != "" && (prev.written != "" || s.marked.Load()) &&
			!s.foreign(&domainSub{written: prev.written}, before) &&
			!prev.makerAt.IsZero() {
			makerAt = prev.makerAt
		}
		// One moved from another secret's post-url no longer posts to
		// its maker, whose liveness does not matter to it.
		return id, written, makerAt, moved == "", nil
	}
	if err != nil {
		return "", "", time.Time{}, false, err
	}
	if out.ID == "" {
		return "", "", time.Time{}, false, orchestrator.E("netsapiens.subscription_create", orchestrator.KindProviderRejected, errors.New("the answer has no id"))
	}
	// This write's expiry as reads render it, which is what a read before
	// a delete is held against (sharedWith): the create's answer may
	// render it otherwise (the guide's example answers it as written,
	// reads answer ISO-8601 with an offset [C-code]), and taken from it,
	// this process's own write looked like another's, and a process alone
	// left its subscription at Close. A read that fails leaves it unknown.
	// The answer's expiry, whatever its layout, ends on this process's
	// second if the PBX keeps it: on a PBX applying the create late, the
	// read after answers 404, and this is all there is to learn it from.
	s.observe(out.Expires)
	written, _ = s.readExpiry(string(out.ID))
	return string(out.ID), written, time.Time{}, false, nil
}

// find looks for the subscription a create was refused for (409): the
// domain's, of model call for every user, posting to postURL. The listing
// is read page by page, as the calls' are (listPaged): list endpoints
// honour limit and start in many controllers [C-code], no default page
// size is documented, and a key that sees many subscriptions (other
// domains' under a reseller's, other integrations') may have ours past
// the first page. Read on the first page alone, ours was not found:
// the create failed for good, every minute, and the domain was never
// subscribed (polled only).
//
// The search goes on while a page brings a subscription not seen before,
// whatever its length: it looks for one the 409 says exists, not for the
// end of a listing, so that a page shorter than asked (a PBX paging by a
// size of its own, honouring start) is read on from, and one that ignores
// start, answering a page again, ends it. A later page is asked from one
// row back, as the calls' are, so that a subscription deleted between two
// requests (which moves the rows after it one back) does not skip the
// row that was first on the next page. Not found, the error is transient
// for the keeper, which tries the create again after a back-off; nothing
// is created meanwhile (the PBX refuses a second matching subscription).
func (s *subscriber) find(ctx context.Context, domain, postURL string) (id, moved string, err error) {
	var accepted []string
	if s.accepted != nil {
		accepted = s.accepted(domain)
	}
	seen := map[string]bool{}
	// other is the first subscription posting to an accepted secret's
	// post-url: taken only once the listing has shown none posting to
	// postURL. A PBX matching the post-url answers 409 for the one
	// posting there (another replica's, or this process's before a
	// restart), and the old one, listed first as it was made first, was
	// moved onto postURL beside it: every event posted twice, or, where
	// the PBX refuses an update matching another as it refuses a create,
	// a create failing at every try.
	other := ""
	start, pages := 0, 0
	for pages < s.c.Load().listPages {
		pages++
		q := "?limit=" + strconv.Itoa(s.c.Load().listLimit)
		if start > 0 {
			q += "&start=" + strconv.Itoa(start)
		}
		var subs []subscriptionWire
		if err := s.c.Load().do(ctx, request{op: "subscription_list", method: http.MethodGet, path: "/subscriptions" + q, safe: true}, &subs); err != nil {
			return "", "", err
		}
		fresh := 0
		for _, sub := range subs {
			if sub.Model == "call" && strings.EqualFold(sub.Domain, domain) && sub.User == "*" && sub.ID != "" {
				switch {
				case samePostURL(sub.PostURL, postURL):
					return string(sub.ID), "", nil
				case other == "" && slices.ContainsFunc(accepted, func(u string) bool { return samePostURL(sub.PostURL, u) }):
					other = string(sub.ID)
				}
			}
			if !seen[string(sub.ID)] {
				seen[string(sub.ID)] = true
				fresh++
			}
		}
		if fresh == 0 {
			break // the end, or a PBX that answers a page again
		}
		start += max(1, len(subs)-1)
	}
	if other != "" {
		return other, postURL, nil
	}
	return "", "", fmt.Errorf("netsapiens: subscribe %s: a matching subscription exists but is not listed (%d subscriptions on %d pages read)",
		domain, len(seen), pages)
}

// renew moves the subscription d's expiry a TTL ahead. It is read before
// and after: before, an expiry other than the one this process wrote last
// (d.written, when known) is another process's write (one posting to the
// same post-url, which adopted the subscription on its create's 409 and
// renews it at half its life), and the subscription, shared, is not
// deleted by this one while that process may still use it (delete); the
// read after learns the rendering of this write. A read that fails tells
// nothing, and the renewal goes on as before.
//
// The read after is this write only where it shows an expiry other than
// the read before did. The PUT answers 202 [doc], applied when the PBX
// gets to it, and a read after one applied later shows the expiry as it
// was; a PUT answered a failure may have been applied all the same (a
// 5xx, a timeout after it reached the PBX). Either, taken for this
// process's write, made its own renewal look like another's once applied
// (at the next renewal's read before, or the delete's), and a process
// alone left its subscription to post to it, gone, until it expired (a
// TTL and up to a day). Such a write is unknown (written ""), as is one
// whose reads failed: the delete then goes on, unless a renewal saw
// another's write within the TTL. A write of this process's own second
// (see expiry) read once the PBX is known to keep it is not unknown for
// that: an expiry ending on another second is another's (foreign).
//
// An adopted subscription's maker may still be running; it renews within
// half a TTL and renewSlack of its last write, which came before the
// adoption. A renewal whose read before could tell another's write (it
// shows an expiry, and this process's last write is known) has looked for
// it once it saw one (shared, as any other), or once the maker's renewal
// was due by then: the subscription is no longer taken for adopted
// (sharedWith). One made before (the adopter's renewal comes half a TTL
// after the adoption, which may follow the maker's write by less than
// renewSlack: replicas starting together, a maker's renewal running late)
// showed the adopter's own write while the live maker had not renewed
// yet, and an adopter letting go then deleted the subscription under it,
// which lost its events until its renewal answered 404. Such a look
// leaves it adopted; the delete, once the maker's renewal is due, reads
// for itself (delete), and the next renewal looks again.
func (s *subscriber) renew(domain string, d *domainSub) error {
	at := s.now()
	before, read, written, _, err := s.write(domain, d.id, "", at)
	told := read && before != "" && (d.written != "" || s.marked.Load())
	seen := told && s.foreign(d, before)
	if seen {
		d.sharedAt = s.now()
	}
	d.written = written
	if err != nil {
		return err
	}
	if seen || (told && s.makerDue(d, at)) {
		d.adopted = false
	}
	return nil
}

// makerDue says the maker of d's adopted subscription, if it still runs,
// has renewed it by at: half a TTL and renewSlack after its last write
// (makerAt, or, unknown, no later than the adoption).
func (s *subscriber) makerDue(d *domainSub, at time.Time) bool {
	last := d.makerAt
	if last.IsZero() {
		last = d.adoptedAt
	}
	return at.Sub(last) >= s.ttl/2+renewSlack
}

// write renews the subscription id to the expiry reckoned at at (and,
// with postURL, moves it there) between two reads of its expiry: before is
// what the read before shows (read, whether it succeeded), written this
// write as the read after renders it, "" unknown (see renew), and up how
// much later than a TTL ahead at UTC+14 the expiry written ends.
//
// An expiry that would read as the one it replaces, or earlier, goes to
// the minute after it. On a PBX keeping expiries to the minute (one
// stores them as written [C-code]; the keeper must be right on either
// side), writes in one minute read alike whatever
// seconds they end on (expiry): an adoption in the minute of its maker's
// write (replicas starting together) was no write at all to either. The
// maker's end took the adopter's expiry for its own and deleted the
// subscription under it, and the adopter, learning neither its write nor
// its maker's age, never deleted it at its end. Later than the one read,
// each write reads unlike every write before it, a third process's in
// that minute too. The expiry before, rendered in the zone the PBX reads
// writes in, shows the minute the write would read as; one ending on
// second 0 may be such a PBX's (or another process's mark of 0: a minute
// more, harmless), and one more than maxPush ahead is not (a PBX rendering
// in another zone than it reads in): left as it is.
func (s *subscriber) write(domain, id, postURL string, at time.Time) (before string, read bool, written string, up time.Duration, err error) {
	before, read = s.readExpiry(id)
	expires, up := s.expiryAt(at)
	if b, ok := parseExpiry(before); ok && b.Second() == 0 {
		bm := time.Date(b.Year(), b.Month(), b.Day(), b.Hour(), b.Minute(), 0, 0, time.UTC)
		if e, err := time.Parse(subscriptionDatetime, expires); err == nil {
			if push := bm.Sub(e.Truncate(time.Minute)) + time.Minute; push > 0 && push <= maxPush {
				expires, up = e.Add(push).Format(subscriptionDatetime), up+push
			}
		}
	}
	if err := s.update(domain, id, postURL, expires); err != nil {
		return before, read, "", up, err
	}
	if after, ok := s.readExpiry(id); read && ok && after != before {
		written = after
	}
	return before, read, written, up, nil
}

// parseExpiry reads an expiry as reads render it: ISO-8601 with an offset
// [C-code], or as written (a zone the same for every value of one PBX).
func parseExpiry(v string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339, subscriptionDatetime, "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// readExpiry reads subscription id's expiry as the PBX renders it; ok
// says the read succeeded.
func (s *subscriber) readExpiry(id string) (expires string, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var sub subscriptionWire
	if err := s.c.Load().do(ctx, request{op: "subscription_read", method: http.MethodGet, path: "/subscriptions/" + seg(id), safe: true}, &sub); err != nil {
		return "", false
	}
	s.observe(sub.Expires)
	return sub.Expires, true
}

// sharedWith says another process posting to this post-url used the
// subscription d lately: a read (expires, as it renders the expiry now)
// shows an expiry this process did not write last, or one did within the
// last TTL (the other renews at half its life, so one still running
// writes within any TTL).
func (s *subscriber) sharedWith(d *domainSub, expires string) bool {
	return s.foreign(d, expires) ||
		(!d.sharedAt.IsZero() && s.now().Sub(d.sharedAt) < s.ttl)
}

// update renews the subscription id to expires and, with postURL, moves
// it there.
func (s *subscriber) update(domain, id, postURL, expires string) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	body := map[string]string{"subscription-expires-datetime": expires}
	if postURL != "" {
		body["post-url"] = postURL
	}
	return s.c.Load().do(ctx, request{op: "subscription_update", method: http.MethodPut, path: "/subscriptions/" + seg(id),
		body: body, safe: true}, nil)
}

// samePostURL reports whether post-urls a and b, one as written and one
// as a read answers it, are the same URL. Whether a read answers the
// post-url as written is undocumented [guess]: a PBX that normalises URLs
// when it stores them answers the scheme and host in lower case, without
// a default port, the path with a trailing slash, escapes decoded or
// written otherwise, the query's parameters in another order (RFC 3986's
// equivalences, which a receiver serves alike). Compared as strings, this process's own
// subscription read so was taken for one another process had moved, and
// left undeleted (posting to a process gone until it expired, up to a TTL
// and a day), and the 409's search (find) never found it: the domain's
// next watch could not subscribe before then. The path's token and the
// query's values are compared as they are: a token differing in case is
// another secret's.
func samePostURL(a, b string) bool {
	if a == b {
		return true
	}
	ua, err := url.Parse(a)
	if err != nil {
		return false
	}
	ub, err := url.Parse(b)
	if err != nil {
		return false
	}
	host := func(u *url.URL) string {
		h := strings.ToLower(u.Host)
		if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
			h = strings.TrimSuffix(h, ":"+p)
		}
		return h
	}
	path := func(u *url.URL) string { return strings.TrimSuffix(u.Path, "/") }
	return strings.EqualFold(ua.Scheme, ub.Scheme) && host(ua) == host(ub) && path(ua) == path(ub) &&
		ua.User.String() == ub.User.String() && maps.EqualFunc(ua.Query(), ub.Query(), slices.Equal)
}

// delete removes the subscription; DELETE's body is required (notes §7.1).
//
// It is read first (GET /subscriptions/{id} [doc]): one that no longer
// posts to this process's post-url was adopted and moved by another
// process (a rolling restart that rotated the callback secret, on a PBX
// whose 409 leaves the post-url out of its match: see create), and is
// its now. Deleted, by this process's Close or by its keeper once its
// last watch lingered, it went from under the new process's transfers
// (polled until its renewal answered 404 and it subscribed again). It is
// left alone. A read that fails (a 404 too), or shows no post-url, tells
// nothing, and the subscription, ours as far as this process knows, is
// deleted as before, unless a renewal saw another process's write within the
// TTL (below). (A move between the read and the delete is not seen: the new
// process then subscribes again after its renewal's 404, as it did.)
//
// Two processes posting to one post-url (replicas behind one public URL,
// or a restart overlap without a rotated secret) share one subscription:
// the PBX refuses the second's create (409), which adopts the first's and
// renews it. It is the one both use, and the one that lets go first
// deleted it under the other's transfers (polled until its renewal
// answered 404, up to half a TTL). A read showing an expiry this process
// did not write last, or a renewal of this process that saw another's
// write within the last TTL (sharedWith), says another process uses it:
// it is left to that process, whose own end deletes it. So is one this
// process adopted (d.adopted) and has not renewed since, whatever the
// read says: its maker, which wrote before the adoption, writes again
// within half a TTL if it still runs, and no look of this process has
// spanned that yet, unless its last write (d.makerAt, see create) is
// older than half a TTL (and renewSlack) by now (kept when the next watch
// adopts it again: see create). An adopter letting go before its first renewal (a
// replica that used the domain for one transfer) deleted it under its
// maker, which lost its events until its renewal answered 404 (up to half
// a TTL); a killed maker's subscription adopted so is left to expire by
// itself, as its maker left it (within a TTL and a day). What this cannot
// tell: two processes that drew the same second (see expiry) write the
// same expiry when they write in one second, of one TTL; a PBX
// whose reads show no expiry (or fail) tells nothing, and the delete goes
// on as before (a failed read of a subscription a renewal saw shared still
// leaves it) (an adopter's renewals then never look, and it leaves the
// subscription to expire); and the last of the processes to let go, within a TTL of
// the other's last write, leaves it too, to expire by itself (within a
// TTL and a day, as a killed process's does; the next process adopts it).
func (s *subscriber) delete(ctx context.Context, domain string, d *domainSub) error {
	id := d.id
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var sub subscriptionWire
	err := s.c.Load().do(ctx, request{op: "subscription_read", method: http.MethodGet, path: "/subscriptions/" + seg(id), safe: true}, &sub)
	// A read answered 404 is not taken for the subscription gone: a PBX
	// without the route answers "404 No Route Found" [C-code], and the
	// subscription, never deleted, posted to a process gone until it
	// expired. The DELETE's own 404 says gone.
	if err == nil {
		s.observe(sub.Expires)
	}
	if err == nil && sub.PostURL != "" && !samePostURL(sub.PostURL, s.url(domain)) {
		s.log.Info().Str("domain", domain).Str("subscription", id).
			Msg("the subscription posts elsewhere now, moved by another process: left to it")
		return nil
	}
	if d.adopted && (d.makerAt.IsZero() || s.now().Sub(d.makerAt) < s.ttl/2+renewSlack) {
		s.leave(domain, d)
		s.log.Info().Str("domain", domain).Str("subscription", id).
			Msg("the subscription was adopted from another process posting to the same url and not renewed since: left to it")
		return nil
	}
	// A renewal that saw another's write within the TTL (sharedAt) tells
	// without this read: taken for nothing when the read failed (a 5xx
	// after its retries, a timeout), the subscription was deleted under
	// the process still renewing it.
	expires := sub.Expires
	if err != nil {
		expires = ""
	}
	if s.sharedWith(d, expires) {
		s.log.Info().Str("domain", domain).Str("subscription", id).
			Msg("another process posting to the same url renewed the subscription: left to it")
		return nil
	}
	err = s.c.Load().do(ctx, request{op: "subscription_delete", method: http.MethodDelete, path: "/subscriptions/" + seg(id),
		body: map[string]string{"subscription_id": id, "domain": domain}, safe: true}, nil)
	if orchestrator.KindOf(err) == orchestrator.KindCallNotFound {
		return nil // gone already
	}
	return err
}

// leave records that a keeper let go of d's adopted subscription without
// deleting it: see create.
func (s *subscriber) leave(domain string, d *domainSub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left[domain] = leftSub{id: d.id, written: d.written, makerAt: d.makerAt}
}

// takeLeft returns and forgets what leave recorded of domain's
// subscription.
func (s *subscriber) takeLeft(domain string) (leftSub, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.left[domain]
	delete(s.left, domain)
	return l, ok
}

// Close deletes every subscription the client holds, bounded by ctx, and
// stops keeping them; the engine has stopped watching by then. A client
// without subscriptions returns at once.
func (c *Client) Close(ctx context.Context) error {
	s := c.subs
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if !s.clients[c] {
		s.mu.Unlock()
		return nil // closed already
	}
	delete(s.clients, c)
	if len(s.clients) > 0 {
		// Shared (TakeSubscriptions): the subscriptions are the other
		// clients' too. Deleted here, they were deleted under the
		// transfers those clients drive (their watchers' renewals then
		// answered 404, and the domains went unsubscribed until a new
		// one was made). Only c's watches end with it.
		if s.c.Load() == c {
			for other := range s.clients {
				s.c.Store(other)
				break
			}
		}
		for _, d := range s.domains {
			if d.watchers[c] {
				delete(d.watchers, c)
				select {
				case d.wake <- struct{}{}:
				default:
				}
			}
		}
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("netsapiens: unsubscribe: %w", ctx.Err())
	}
	var errs []error
	for domain, d := range s.domains {
		if d.id != "" {
			if err := s.delete(ctx, domain, d); err != nil {
				errs = append(errs, fmt.Errorf("netsapiens: unsubscribe %s: %w", domain, err))
			}
		}
	}
	clear(s.domains)
	s.mu.Lock()
	clear(s.left)
	s.mu.Unlock()
	return errors.Join(errs...)
}

// TakeSubscriptions makes c, built anew for the account old is at the
// same PBX (a reload of the tenants file that changed another setting),
// share old's event subscriptions, which it then makes its requests for.
// Each kept its own keeper of the one subscription a domain has per
// post-url (the PBX refuses a second, and the two adopt the same): once
// the old client's last transfer in the domain ended, its keeper deleted
// the subscription after the linger (Close would too), under the
// transfers the new one drives, whose domains then went unsubscribed
// until its renewal, up to half a TTL later, answered 404. Shared, the
// subscription is deleted once neither watches the domain, and by the
// Close of the last of them. To be called before c is used.
func (c *Client) TakeSubscriptions(old *Client) {
	if c.subs == nil || old.subs == nil || c.subs == old.subs {
		return
	}
	s := old.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.clients[old] {
		return // old is closed: c keeps its own
	}
	c.subs.stop() // c's own, never used
	s.clients[c] = true
	s.c.Store(c)
	c.subs = s
}

// maxDelivery bounds a delivery's body: a tick's changes of one domain.
const maxDelivery = 4 << 20

// ReceiveSubscription reads one post of a domain's subscription (key is
// the domain): a JSON array of active-call objects (or one such object)
// in legacy or hyphenated names, "remove":"yes" (or "call-remove") on a
// session's end. Anything else is refused with KindInvalid naming the body, "(body)", as the
// field: the API's validation-error always lists a field, and the body is
// the one field a delivery has. It changes nothing: the caller then makes
// the domain's watcher read the listing.
func (c *Client) ReceiveSubscription(r *http.Request, key string) error {
	invalid := func(msg string, err error) error {
		return &orchestrator.Error{Op: "netsapiens.receive_subscription", Kind: orchestrator.KindInvalid,
			Err: err, Fields: map[string]string{"(body)": msg}}
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxDelivery+1))
	// The server's own bound on the body (http.MaxBytesReader) may end
	// the read before this one does: too large all the same, not
	// unreadable.
	var tooLarge *http.MaxBytesError
	if err != nil && !errors.As(err, &tooLarge) {
		return invalid("could not be read", fmt.Errorf("reading the delivery: %w", err))
	}
	if len(data) > maxDelivery || tooLarge != nil {
		return invalid(fmt.Sprintf("is larger than %d bytes", maxDelivery), errors.New("the delivery is too large"))
	}
	calls, err := decodeDelivery(data)
	if err != nil {
		return invalid(err.Error(), err)
	}
	zerolog.Ctx(r.Context()).Debug().Str("domain", key).Int("objects", len(calls)).
		Str("subscription", r.Header.Get("X-Correlation-ID")).Msg("netsapiens subscription delivery")
	return nil
}

// eventCall is one object of a delivery.
type eventCall struct {
	activeCall
	Removed bool
}

// decodeDelivery decodes a post's array, tolerating both naming
// conventions and unexpected field types as listings do. A null is no
// array, nor an element of one a call object: json.Unmarshal leaves its
// target as it was for either, which read as a delivery of no calls, or
// of a call without fields. Its errors are worded to follow "(body)".
//
// A lone call object is read as an array of it: the guide says posts are
// arrays [C-doc], but a receiver written for call_origid posts documents
// them as one object [C-code]. Refused (400, an error NetSapiens counts,
// and a subscription in error may stop posting), such a post was lost as
// the nudge it is.
func decodeDelivery(data []byte) ([]eventCall, error) {
	var raw []json.RawMessage
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		raw = []json.RawMessage{t}
	} else if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return nil, errors.New("is not a JSON array of call objects, nor one call object")
	}
	out := make([]eventCall, 0, len(raw))
	for i, m := range raw {
		var ev eventCall
		if bytes.Equal(m, []byte("null")) {
			return nil, fmt.Errorf("has null as element %d, not a call object", i)
		}
		if json.Unmarshal(m, &ev.activeCall) != nil {
			return nil, fmt.Errorf("has element %d that is not a call object", i)
		}
		var rm struct {
			Remove     flexString `json:"remove"`
			CallRemove flexString `json:"call-remove"`
		}
		// Already known to be an object; a field of another type is no removal.
		_ = json.Unmarshal(m, &rm)
		ev.Removed = strings.EqualFold(string(rm.Remove), "yes") || strings.EqualFold(string(rm.CallRemove), "yes")
		out = append(out, ev)
	}
	return out, nil
}
