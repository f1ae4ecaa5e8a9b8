package netsapiens

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Name implements orchestrator.Provider.
func (c *Client) Name() string { return Name }

// Capabilities implements orchestrator.Provider. NS v2 offers hold,
// click-to-call and attended transfer; it has no whisper, caller id,
// diversion or recording options on these endpoints.
func (c *Client) Capabilities() orchestrator.Capabilities {
	return orchestrator.Capabilities{Attended: true}
}

// Flow implements orchestrator.Provider.
func (c *Client) Flow(*orchestrator.Request) orchestrator.Flow {
	return orchestrator.Flow{Hold: true, Join: true}
}

var (
	// domainRE is the spec's DomainNamePath without the "~"/"*" forms,
	// which would make transferd act on a domain the client did not name,
	// and starting with a letter or digit, so that "." and ".." (which a
	// URL resolves as path steps, leaving /domains/{domain}) are refused.
	domainRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	userRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,15}$`)
	targetRE = regexp.MustCompile(`^[A-Za-z0-9._+*#@-]{1,64}$`)
)

// Validate implements orchestrator.Provider.
func (c *Client) Validate(r *orchestrator.Request) map[string]string {
	bad := map[string]string{}
	switch {
	case r.Call.Domain == "":
		bad["call.domain"] = "is required for netsapiens"
	case !domainRE.MatchString(r.Call.Domain):
		bad["call.domain"] = "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
	}
	switch {
	case r.Call.User == "":
		bad["call.user"] = "is required for netsapiens: the user (extension) whose call is transferred"
	case !userRE.MatchString(r.Call.User):
		bad["call.user"] = "must be 1-16 letters, digits, '.', '_', '+' or '-', starting with a letter or digit"
	}
	if len(r.Call.CallID) > 256 {
		bad["call.call_id"] = "must be at most 256 characters"
	}
	if r.Call.AgentCallID != "" {
		bad["call.agent_call_id"] = "is not used by netsapiens; name the agent with call.user"
	}
	if r.Target != "" && !targetRE.MatchString(r.Target) {
		bad["target"] = "must be an extension, number or user@domain (1-64 characters, no spaces or '/')"
	}
	if r.Target != "" && sameUser(r.Target, r.Call.User) {
		bad["target"] = "must differ from call.user"
	}
	return bad
}

func (c *Client) userPath(r *orchestrator.Request) string {
	return "/domains/" + seg(r.Call.Domain) + "/users/" + seg(r.Call.User) + "/calls"
}

// listCalls is the guide's "Read Active Calls in Domain" (listDomain).
func (c *Client) listCalls(ctx context.Context, r *orchestrator.Request) (calls []activeCall, cut, err error) {
	return c.listDomain(ctx, r.Call.Domain)
}

// userCalls reads the calls of user in domain ("Read Active Calls for
// User" [doc]: the sessions the user is a party to [inferred]) where the
// domain's listing is cut and the PBX ignores start (startIgnored). Such a
// PBX, paging by a size of its own, shows only its first page of the
// domain however it is asked: a domain busier than a page could not be
// read whole, every locate there was unknown, and no setting helped
// (TRANSFERD_NETSAPIENS_LIST_LIMIT at the page's size only made the cut
// known). An agent's calls, though, fit in a page. The user's listing is
// paged as the domain's is, a page short of the PBX's page size its end;
// whole says it was read to its end. Anything else (a page again whose
// count cannot tell, an error) is not whole, and the caller keeps the
// domain's cut: unknown, never gone.
func (c *Client) userCalls(ctx context.Context, domain, user string) (rows []activeCall, whole bool) {
	if user == "" || !c.startIgnored.Load() {
		return nil, false
	}
	rows, _, cut, err := c.listPaged(ctx, "/domains/"+seg(domain)+"/users/"+seg(user)+"/calls", c.pageFull())
	if err != nil || cut != nil {
		zerolog.Ctx(ctx).Debug().Str("domain", domain).AnErr("cut", cut).Err(err).Msg("a user's listing could not be read whole")
		return nil, false
	}
	return rows, true
}

// maxListing bounds a domain's listing. A row is about 800 bytes, so
// apiclient.MaxBody cut the listing of a domain with more than about 1,300
// calls, and every transfer in such a domain failed to find its call (the
// listing cut short read as invalid JSON); 32 MiB is about 40,000 calls.
const maxListing = 32 << 20

// errListingCut: see listDomain.
var errListingCut = errors.New("the listing of the domain's calls could not be read whole: a call it does not show may be up")

// errPageAgain is the cut of a PBX that answered a page again, for a
// start past it, while counting more calls than the page shows: it ignores
// start (answeredAgain).
var errPageAgain = errors.New("the PBX answered a page again")

// rowKey identifies a row across the pages of a listing.
type rowKey struct{ session, orig, term string }

// listDomain reads the domain's calls page by page. List endpoints honour
// limit and start [C-code], and no default page size is documented: a
// PBX that pages by default and was read on its first page alone showed
// the calls past it as not listed, so that the agent's call was not
// found, a consult not seen counted as ended at the visibility window,
// and the caller's row was read one by one at every reading. So each page
// asks for Client.listLimit rows and the listing goes on, from the rows
// read so far, while a page comes back with at least that many. A limit
// sent to a PBX that ignores it does no harm: it answers everything (or
// its own page, which, longer than asked, is read on from), and a page
// shorter than asked is the end. (A PBX that caps limit below ours, or
// ignores it with a smaller page of its own, looks whole; the default
// limit is CakePHP's default cap, 100, for that [guess]. The locate checks
// a short page against the domain's count, and a PBX so found to page by
// a size of its own is read on from pages of that size from then on, and
// where it ignores start, a transfer's calls from its agent's listing:
// see shortPage.)
//
// cut is not nil when the listing may leave calls out: ListPages pages
// were read and the last was full, or a full page brought no row not seen
// before (a PBX that ignores start answers its first page again; nothing
// is read twice, and the loop ends). Such a PBX may have answered every
// call each time, or the same page of a longer listing: the domain's
// count tells, and a page read after it that shows at least as many
// calls as the count is whole (answeredAgain). What a cut listing does
// not show is unknown, never gone: its readers say so.
func (c *Client) listDomain(ctx context.Context, domain string) (calls []activeCall, cut, err error) {
	calls, _, cut, err = c.listPaged(ctx, domainCalls(domain), c.pageFull())
	return calls, cut, err
}

// domainCalls is the path of a domain's collection of calls.
func domainCalls(domain string) string { return "/domains/" + seg(domain) + "/calls" }

// pageFull is the length from which a page is read on from: the limit
// asked for, or the PBX's own page size below it once learned.
func (c *Client) pageFull() int {
	if own := int(c.pageOwn.Load()); own > 0 && own < c.listLimit {
		return own
	}
	return c.listLimit
}

// sawPage records a page of n rows (Client.pageSeen). A page longer than
// the page size learned shows that the PBX pages by more: that size is
// forgotten (learned from a short page followed by calls that had
// started meanwhile, say), and every page of the limit is read on again.
func (c *Client) sawPage(n int) {
	for {
		seen := c.pageSeen.Load()
		if int64(n) <= seen || c.pageSeen.CompareAndSwap(seen, int64(n)) {
			break
		}
	}
	if own := c.pageOwn.Load(); own > 0 && int64(n) > own {
		c.pageOwn.CompareAndSwap(own, 0)
	}
}

// listPaged is listDomain reading on from every page of full rows or
// more, of the collection of calls at path (a domain's, or a user's:
// listUser); longest is the longest page read.
func (c *Client) listPaged(ctx context.Context, path string, full int) (calls []activeCall, longest int, cut, err error) {
	// seen holds every row read, true for a row of the first page or of
	// a page that began with a row marked true: no row up to it was
	// skipped.
	var seen map[rowKey]bool
	// A later page is asked from one row back, the last of the page
	// before. (Pages of one row cannot overlap and still go on.)
	back := 0
	if full > 1 {
		back = 1
	}
	start, again, stepBack := 0, false, 1
	for page := 0; page < c.listPages; page++ {
		q := "?limit=" + strconv.Itoa(c.listLimit)
		if start > 0 {
			q += "&start=" + strconv.Itoa(start)
		}
		var pg listPage
		err := c.do(ctx, request{op: "list_calls", method: http.MethodGet,
			path: path + q, safe: true, maxBody: maxListing}, &pg)
		if orchestrator.KindOf(err) == orchestrator.KindCallNotFound {
			// A 404 on the collection means the domain does not exist: the
			// request is wrong, not a call.
			return nil, 0, nil, &orchestrator.Error{Op: "netsapiens.list_calls", Kind: orchestrator.KindProviderRejected, Err: err,
				Evidence: orchestrator.EvidenceOf(err)}
		}
		if err != nil {
			return nil, 0, nil, err
		}
		rows := pg.rows
		if start == 0 && !pg.array {
			if cut, err := c.noArray(ctx, path); cut != nil || err != nil {
				return nil, 0, cut, err
			}
		}
		c.sawPage(len(rows))
		longest = max(longest, len(rows))
		if start == 0 && full == c.listLimit && len(rows) >= full && c.limitHonoured.Load() {
			if all, ok := c.listAllAtOnce(ctx, path); ok {
				return all, longest, nil, nil
			}
		}
		// A row met before is not listed twice: a call that started
		// meanwhile moves the rows after it one on.
		fresh := 0
		for _, ac := range rows {
			if _, dup := seen[keyOf(&ac)]; !dup {
				calls = append(calls, ac)
				fresh++
			}
		}
		if seen == nil {
			seen = make(map[rowKey]bool, 2*len(rows))
		}
		// A call of an earlier page that ended meanwhile moved the rows
		// after it one back, and the row first on the next page was then
		// on the page read already: asked from where that page ended,
		// neither request returned it, and the call was not listed (after
		// a join, the hang-up disconnected by our call-id the caller's
		// call with the target). Rows keep their order, so a page that
		// begins with a row of a page so checked skipped none; one that
		// does not (or is empty) is asked again from further back (one
		// row, then two more, four...), its rows kept. Going back by the
		// rows shifted, rather than from the first page again, a busy
		// domain whose calls end all the time is still read whole within
		// the pages allowed. Read again, a full page of rows met before
		// is no PBX answering its first page again.
		if start > 0 && back > 0 && (len(rows) == 0 || !seen[keyOf(&rows[0])]) {
			for i := range rows {
				if _, dup := seen[keyOf(&rows[i])]; !dup {
					seen[keyOf(&rows[i])] = false
				}
			}
			start, again = max(0, start-stepBack), true
			stepBack *= 2
			continue
		}
		stepBack = 1
		if start > 0 && !again && fresh == 0 && len(rows) >= full {
			// The PBX answered the page before again: it ignores start.
			c.startIgnored.Store(true)
			calls, cut, err := c.answeredAgain(ctx, path+q, calls, seen)
			return calls, longest, cut, err
		}
		if len(rows) < full {
			return calls, longest, nil, nil
		}
		for i := range rows {
			seen[keyOf(&rows[i])] = true
		}
		start += len(rows) - back
	}
	return calls, longest, fmt.Errorf("%w (%d pages of %d calls read, the last full)", errListingCut, c.listPages, full), nil
}

func keyOf(ac *activeCall) rowKey { return rowKey{ac.SessionID, ac.OrigCallID, ac.TermCallID} }

// noArray judges a first page answered 2xx with no array, an empty body
// or null. Read as no calls, a proxy's or a controller's answer to a
// failure it did not report (a response cut to nothing) made every call
// of the domain not listed: most readers then read a call by its id, but
// the join's lookup of the consult's session, past the window of the
// dial, took it for a refusal (the transfer failed, and the recovery hung
// up the consult the agent and target were on). A domain with no calls
// answers [] [inferred]; whether a PBX answers nothing or null instead is
// not documented [guess], so the count, the one documented thing that
// says more [doc], decides, as it does a short page (shortPage): none
// counted, the domain has no calls and the page stands; more is a listing
// cut (unknown, never calls gone); a count unreadable for now is unknown;
// one the PBX refused (a status of 4xx: a PBX without it, a key not
// allowed it) tells nothing, and the page stands. A count answered 2xx
// that says no number (an empty body or null, an object without its
// total, a total that is no number) is unknown too: the same answer cut
// to nothing that emptied the listing empties the count, and taken for
// telling nothing it left the page standing, the failure the count is
// asked to rule out. Asked only when a page has no array, it costs a
// listing that has one nothing.
func (c *Client) noArray(ctx context.Context, path string) (cut, err error) {
	total, err := c.countCalls(ctx, path)
	switch {
	case err != nil && orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable && orchestrator.EvidenceOf(err) != nil:
		return nil, nil
	case err != nil:
		return fmt.Errorf("%w (a page answered with no array, and the domain's count could not be read: %v)", errListingCut, err), nil
	case total == nil:
		return fmt.Errorf("%w (a page answered with no array, and the domain's count showed no total)", errListingCut), nil
	case *total == 0:
		return nil, nil
	}
	return fmt.Errorf("%w (a page answered with no array while the domain counts %d calls)", errListingCut, *total), nil
}

// answeredAgain tells whether the listing of a PBX that answered a page
// again (calls, the rows read so far) is whole: it answered every call
// each time, or the same page of a longer listing. The domain's count
// tells, held against that page read once more after it: the PBX showed
// every call when it shows at least as many as were counted. (Held
// against every row read, a call of the first page that ended meanwhile
// still counted, and stood for a call never read: the listing looked
// whole, and that call not listed. Rows keep their order, so a call up
// when counted that the page read after does not show has as many rows
// before it as the page holds: the count was more.) query is the page's.
func (c *Client) answeredAgain(ctx context.Context, query string, calls []activeCall, seen map[rowKey]bool) ([]activeCall, error, error) {
	path, _, _ := strings.Cut(query, "?")
	total, err := c.countCalls(ctx, path)
	switch {
	case err != nil:
		return calls, fmt.Errorf("%w (the PBX answered a page again, and the count could not be read: %v)", errListingCut, err), nil
	case total == nil:
		return calls, fmt.Errorf("%w (the PBX answered a page again, and the count showed no total)", errListingCut), nil
	}
	var rows listing
	if err := c.do(ctx, request{op: "list_calls", method: http.MethodGet, path: query, safe: true, maxBody: maxListing}, &rows); err != nil {
		if orchestrator.KindOf(err) == orchestrator.KindCallNotFound { // as listDomain's
			err = &orchestrator.Error{Op: "netsapiens.list_calls", Kind: orchestrator.KindProviderRejected, Err: err,
				Evidence: orchestrator.EvidenceOf(err)}
		}
		return nil, nil, err
	}
	for _, ac := range rows {
		if _, dup := seen[keyOf(&ac)]; !dup {
			calls = append(calls, ac)
		}
	}
	if *total > len(rows) && len(rows) == c.listLimit {
		// A page of as many rows as asked: the PBX may honour limit while
		// it ignores start (nssim's limit_only; which of the two a
		// controller honours is [guess]). Asked once for more than were
		// counted, it answers every call, and the listing is whole in one
		// request where it was cut (every reading of a domain busier than
		// the limit unknown but for its agents' listings). A PBX paging
		// by the limit's size of its own, or capping limit there, answers
		// the same page; a PBX paging below the limit ignores it, and is
		// not asked.
		if all, ok := c.listAll(ctx, path, *total); ok {
			if !c.limitHonoured.Swap(true) {
				zerolog.Ctx(ctx).Info().Int("limit", c.listLimit).
					Msg("the PBX honours limit and ignores start: a listing of a full page is asked at once for more rows than counted")
			}
			return all, nil, nil
		}
	}
	if *total > len(rows) {
		return calls, fmt.Errorf("%w (%w: %d calls shown of %d)", errListingCut, errPageAgain, len(rows), *total), nil
	}
	return calls, nil, nil
}

// listAll asks a collection of calls (path) for all of its rows in one
// page, with a limit above total, the calls counted a moment before. ok
// says the answer is the whole listing: shorter than the limit (its end:
// more rows than asked are never answered by a PBX that honours it)
// and at least as long as the count (a PBX capping limit below it
// answers a page shorter than asked too; a call that ended meanwhile
// makes it unknown, read again at the next reading). The limit leaves
// room for calls that start meanwhile. A request that fails (a PBX
// refusing a limit it caps, a listing past maxListing) leaves the listing
// cut, as it was without it.
func (c *Client) listAll(ctx context.Context, path string, total int) (calls []activeCall, ok bool) {
	limit := total + max(8, total/8)
	var rows listing
	if err := c.do(ctx, request{op: "list_calls", method: http.MethodGet, path: path + "?limit=" + strconv.Itoa(limit),
		safe: true, maxBody: maxListing}, &rows); err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Msg("a listing asked for more rows than counted could not be read")
		return nil, false
	}
	c.sawPage(len(rows))
	return rows, len(rows) < limit && len(rows) >= total
}

// listAllAtOnce is listAll for a PBX known to answer it whole
// (Client.limitHonoured), asked after a first page of the limit: the
// count, then the larger limit, without the page answered again and the
// page read after the count that answeredAgain asks first (three requests
// a listing where there were five). ok says the answer is the whole
// listing; otherwise the listing is paged as before. An answer no longer
// than the limit (or a refusal) says the PBX no longer honours a larger
// limit, and it is forgotten: the next listing that answers a page again
// tries it once more and learns it again where it is answered whole. A
// call that ended between the count and the answer leaves it remembered.
func (c *Client) listAllAtOnce(ctx context.Context, path string) (calls []activeCall, ok bool) {
	total, err := c.countCalls(ctx, path)
	if err != nil || total == nil {
		return nil, false
	}
	all, ok := c.listAll(ctx, path, *total)
	if !ok && len(all) <= c.listLimit && c.limitHonoured.CompareAndSwap(true, false) {
		zerolog.Ctx(ctx).Info().Int("limit", c.listLimit).Int("answered", len(all)).
			Msg("the PBX no longer answers a larger limit whole: listings are paged again")
	}
	return all, ok
}

// countCalls reads the count of a collection of calls (path, without its
// query): nil when the answer shows no total. The total is read written
// as a number or as a string of one, as a PHP controller may write it
// (listings' fields are read so too: flexString); refused as undecodable,
// a count that said how many calls there are told nothing. A total that
// is no number is an error of no evidence (the PBX answered 2xx).
func (c *Client) countCalls(ctx context.Context, path string) (*int, error) {
	var count struct {
		Total flexString `json:"total"`
	}
	if err := c.do(ctx, request{op: "count_calls", method: http.MethodGet, path: path + "/count", safe: true}, &count); err != nil {
		return nil, err
	}
	if count.Total == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(string(count.Total))
	if err != nil || n < 0 {
		return nil, orchestrator.E("netsapiens.count_calls", orchestrator.KindProviderRejected,
			fmt.Errorf("the count's total %q is no number of calls", string(count.Total)))
	}
	return &n, nil
}

// shortPage tells whether a listing of one page shorter than the limit
// asked for (calls) may have left calls out, from the domain's count: a
// PBX that pages by a size of its own below TRANSFERD_NETSAPIENS_LIST_LIMIT
// answers a first page shorter than asked, which is the end of a listing
// as far as a client can tell, and a call of the agent's may be on a page
// never read. Taken for whole, the agent's call past the first page was
// call_not_found, a call that was up all along; and where the request
// names no call, the one call of the agent's on that page was taken while
// a second may be past it, which the client would have been asked to
// choose between.
//
// The answer has no total and no next page [doc: an array of calls]; the
// count is the one thing the API documents that says more [doc:
// GET /domains/{domain}/calls/count]. A count above the page makes the
// listing read on, as if the page were full: a PBX that honours start
// shows the rest, and its page size, now known (pageOwn), is read on from
// by every listing after, without TRANSFERD_NETSAPIENS_LIST_LIMIT; one
// that does not answers its first page again, and the listing is cut
// (unknown, not "not found"), its page size learned all the same (a
// listing of that many rows is checked against the count) and the calls a
// transfer looks for read from its agent's own listing (userCalls). The
// count that cannot be read for now is
// unknown too; refused (404, 403: a PBX without it, a key not allowed
// it), it tells nothing, and the page stands for the listing, as before.
//
// missed says the locate found no call: the count is then always asked,
// which a miss can afford. Where it found one call and the request names
// none (the common way of asking), the count is spared when the page is
// shorter than one the PBX has answered (pageSeen: it pages by more, so
// this page is the end) or its page size is known, so that most
// transfers pay nothing for it.
func (c *Client) shortPage(ctx context.Context, domain string, calls []activeCall, missed bool) ([]activeCall, error, error) {
	n, full := len(calls), c.pageFull()
	if n == 0 || n >= full {
		// Empty: nothing was cut. A full page: read on already.
		return calls, nil, nil
	}
	if !missed && (full < c.listLimit || int64(n) < c.pageSeen.Load()) {
		return calls, nil, nil
	}
	total, err := c.countCalls(ctx, domainCalls(domain))
	switch {
	case err != nil && orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable:
		return calls, nil, nil
	case err != nil:
		return calls, fmt.Errorf("%w (a page of %d calls, short of the limit of %d, and the domain's count could not be read: %v)",
			errListingCut, n, full, err), nil
	case total == nil || *total <= n:
		return calls, nil, nil
	}
	// More counted than listed: read on from a page of n. A call that
	// started between the two requests makes the count one more, and a
	// call that ended meanwhile makes the next page shorter: the listing
	// read on says which, and nothing is learned unless a page of exactly
	// n rows was followed by more (a call started just then too teaches
	// a page size too small, which costs a request per listing of n rows
	// or more until a longer page forgets it; it cuts nothing).
	more, longest, cut, err := c.listPaged(ctx, domainCalls(domain), n)
	if err != nil {
		return nil, nil, err
	}
	log := zerolog.Ctx(ctx).Warn().Str("domain", domain).Int("listed", n).Int("counted", *total).Int("limit", c.listLimit)
	switch {
	case cut != nil || len(more) < *total:
		// Read on, the listing still shows fewer calls than were counted:
		// a PBX that answers its first page again (cut), an API node
		// lagging behind, or calls that ended meanwhile. Unknown, as a
		// count above the page was before the listing was read on; the
		// engine's next attempt reads again.
		if errors.Is(cut, errPageAgain) && longest == n {
			// A PBX that pages by n rows of its own and ignores start,
			// found out. Its first page is all that any listing shows:
			// taken for the end of the listing, a page of n rows left out
			// the calls past it (a consult never seen counted as ended at
			// the visibility window; the join's lookup past it refused).
			// Learned as its page size, a page of n rows is read on from,
			// answered again, and checked against the count (cut, unknown,
			// when it counts more), as TRANSFERD_NETSAPIENS_LIST_LIMIT at
			// that size made it; and the calls a transfer looks for are
			// read from its agent's listing (userCalls).
			c.learnPage(n)
			log.Int("page", n).Msg("the PBX pages by a size of its own below the limit and ignores start: a listing of that many calls is checked against the domain's count, and a transfer's calls are read from its agent's own listing")
			return more, fmt.Errorf("%w (a page of %d calls, short of the limit of %d, while the domain counts %d): %v",
				errListingCut, n, c.listLimit, *total, cut), nil
		}
		if cut == nil {
			cut = fmt.Errorf("read on, %d calls listed", len(more))
		}
		log.Msg("the PBX listed fewer calls than it counts, on a page short of the limit, even read on: an API node lagging behind, or calls that ended meanwhile")
		return more, fmt.Errorf("%w (a page of %d calls, short of the limit of %d, while the domain counts %d): %v",
			errListingCut, n, c.listLimit, *total, cut), nil
	case longest == n && len(more) > n:
		c.learnPage(n)
		log.Int("page", n).Msg("the PBX pages by a size of its own below the limit: read on from pages of that size (TRANSFERD_NETSAPIENS_LIST_LIMIT at that size spares the count this took)")
	}
	return more, nil, nil
}

// learnPage records n as the PBX's own page size (Client.pageOwn), unless
// a smaller one is known.
func (c *Client) learnPage(n int) {
	if own := c.pageOwn.Load(); own == 0 || int64(n) < own {
		c.pageOwn.Store(int64(n))
	}
}

// cutErr is the error of a reader that cannot know what it looks for
// from a listing cut short.
func cutErr(op string, cut error) error {
	return orchestrator.E(op, orchestrator.KindProviderUnavailable, cut)
}

// Locate implements orchestrator.Provider (guide step 2). The agent is
// the user's leg of the session; the caller is the other leg. In the
// guide's inbound case the agent is the term leg: hold uses
// call-term-call-id and the transfer call-orig-call-id. When the agent
// placed the call (orig leg) the roles mirror [inferred, not documented].
func (c *Client) Locate(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Legs, error) {
	const op = "netsapiens.locate"
	r := &t.Request
	calls, cut, err := c.listCalls(ctx, r)
	if err != nil {
		return orchestrator.Legs{}, err
	}
	agents := func(calls []activeCall) []activeCall {
		var found []activeCall
		for _, ac := range calls {
			if !sameUser(ac.TermUser, r.Call.User) && !sameUser(ac.OrigUser, r.Call.User) {
				continue
			}
			if r.Call.CallID != "" && !ac.hasCall(r.Call.CallID) && ac.SessionID != r.Call.CallID {
				continue
			}
			found = append(found, ac)
		}
		return found
	}
	found := agents(calls)
	if cut == nil && (len(found) == 0 || (len(found) == 1 && r.Call.CallID == "")) {
		// Not found, or found once with nothing to tell it from a second
		// call of the agent's: a short page may not be the whole listing.
		if calls, cut, err = c.shortPage(ctx, r.Call.Domain, calls, len(found) == 0); err != nil {
			return orchestrator.Legs{}, err
		}
		found = agents(calls)
	}
	if cut != nil && len(found) <= 1 && (len(found) == 0 || r.Call.CallID == "") {
		// A PBX that ignores start cannot show the domain whole: the
		// agent's own listing, read whole, shows the agent's calls. One
		// that shows none leaves the domain's cut standing: whether that
		// listing shows every call of the user's is inferred, and a call
		// not found must be one the PBX showed is not there. What it
		// shows adds to what the domain's page showed, never replaces
		// it: a call of the agent's that the page showed and the user's
		// listing does not (an API node lagging behind the page's, a
		// listing narrower than inferred) is a call all the same, and
		// dropped, the one call left was taken where the client was to
		// be asked which (ErrSeveralCalls).
		if rows, whole := c.userCalls(ctx, r.Call.Domain, r.Call.User); whole {
			if mine := agents(rows); len(mine) > 0 {
				found, cut = sessionsOf(found, mine), nil
			}
		}
	}
	switch {
	case cut != nil && len(found) <= 1 && (len(found) == 0 || r.Call.CallID == ""):
		// The call, or a second call of the user's, may be on a page not
		// read: unknown, not "not found" (the engine tries again).
		return orchestrator.Legs{}, cutErr(op, cut)
	case len(found) == 0 && r.Call.CallID != "":
		return orchestrator.Legs{}, orchestrator.E(op, orchestrator.KindCallNotFound,
			fmt.Errorf("no active call %q of user %s in domain %s", r.Call.CallID, r.Call.User, r.Call.Domain))
	case len(found) == 0:
		return orchestrator.Legs{}, orchestrator.E(op, orchestrator.KindCallNotFound,
			fmt.Errorf("user %s has no active call in domain %s", r.Call.User, r.Call.Domain))
	case len(found) > 1:
		return orchestrator.Legs{}, orchestrator.E(op, orchestrator.KindCallNotFound,
			fmt.Errorf("%w: user %s has %d active calls; name the one to transfer with call.call_id", orchestrator.ErrSeveralCalls, r.Call.User, len(found)))
	}
	ac := found[0]
	agentID, callerID := ac.TermCallID, ac.OrigCallID
	agentInfo, callerInfo := ac.TermInfo, ac.OrigInfo
	if !sameUser(ac.TermUser, r.Call.User) {
		agentID, callerID = ac.OrigCallID, ac.TermCallID
		agentInfo, callerInfo = ac.OrigInfo, ac.TermInfo
	}
	// The guide's best practice: verify the call is active before acting.
	if agentInfo != "active" || callerInfo != "active" {
		err := fmt.Errorf("call %s is not active (caller %q, agent %q)", ac.SessionID, callerInfo, agentInfo)
		if c.young(t.CreatedAt) {
			// A listing lags a session's update as it lags a new session
			// (a row being rewritten): a client may ask for the transfer
			// as soon as its agent answers, and the row still show the
			// agent's leg ringing. Taken for not active, the transfer
			// failed call_not_active at once, the call up and active. Like
			// a call not listed yet, it is looked for again for the
			// visibility window of the request; then it is not active.
			return orchestrator.Legs{}, orchestrator.E(op, orchestrator.KindProviderUnavailable,
				fmt.Errorf("%w, a moment after the transfer was asked for: it may not show answered yet", err))
		}
		return orchestrator.Legs{}, orchestrator.E(op, orchestrator.KindCallNotActive, err)
	}
	if ac.Server == "" || agentID == "" || callerID == "" {
		return orchestrator.Legs{}, orchestrator.E(op, orchestrator.KindProviderRejected,
			fmt.Errorf("call %s lacks core-server or leg call ids", ac.SessionID))
	}
	return orchestrator.Legs{
		Caller: orchestrator.LegRef{CallID: callerID, SessionID: ac.SessionID, Server: ac.Server},
		Agent:  orchestrator.LegRef{CallID: agentID},
	}, nil
}

// sessionsOf is the rows of a and b, a session listed in both once (as a
// holds it): the same call read in two listings may show its legs
// rewritten between them, so rows are told apart by session, and by
// their keys where a row has no session id.
func sessionsOf(a, b []activeCall) []activeCall {
	out := slices.Clone(a)
	for i := range b {
		dup := slices.ContainsFunc(out, func(ac activeCall) bool {
			if ac.SessionID != "" || b[i].SessionID != "" {
				return ac.SessionID == b[i].SessionID
			}
			return keyOf(&ac) == keyOf(&b[i])
		})
		if !dup {
			out = append(out, b[i])
		}
	}
	return out
}

// Hold implements orchestrator.Provider (guide step 3): the agent's leg,
// call-term-call-id in the guide's case. Holding twice is harmless, so
// the request is retried on transient failures. A 404 within the
// visibility window of the transfer's start is unknown (notAppliedYet):
// the call, older than the transfer, may be one the agent answered a
// moment ago.
func (c *Client) Hold(ctx context.Context, t *orchestrator.Transfer) error {
	err := c.do(ctx, request{op: "hold", method: http.MethodPatch,
		path: c.userPath(&t.Request) + "/" + seg(t.Legs.Agent.CallID) + "/hold", safe: true}, nil)
	return c.notAppliedYet("netsapiens.hold", err, t.CreatedAt)
}

// notAppliedYet turns a 404 to a write addressed to a call that may be
// younger than the visibility window (Client.young: since came before
// the call did) into an unknown outcome, not applied: behind a load
// balancer, an API node lagging behind the switch may not know the call
// yet and answer "not found" for a write to it, doing nothing [guess on
// top of a guess: the notes say nothing of writes]. Taken for the call
// gone, a hold or a join so answered failed the transfer (call_not_found)
// and the recovery hung up a consult the target was on. The engine tries
// an unknown write again, with back-off; once the call is older than the
// window a 404 is the call gone, as it always was (a party who really
// hung up is so reported a window later at most). Any other error is
// returned as it is.
func (c *Client) notAppliedYet(op string, err error, since time.Time) error {
	if orchestrator.KindOf(err) != orchestrator.KindCallNotFound || !c.young(since) {
		return err
	}
	return &orchestrator.Error{Op: op, Kind: orchestrator.KindProviderUnavailable, Evidence: orchestrator.EvidenceOf(err),
		Err: fmt.Errorf("answered \"not found\" a moment after the call began, which an API node that has not seen it yet answers: not applied, tried again: %w", err)}
}

// Unhold implements orchestrator.Provider. A 404 means the caller's call
// is gone and is reported as KindCallNotFound.
func (c *Client) Unhold(ctx context.Context, t *orchestrator.Transfer) error {
	return c.do(ctx, request{op: "unhold", method: http.MethodPatch,
		path: c.userPath(&t.Request) + "/" + seg(t.Legs.Agent.CallID) + "/unhold", safe: true}, nil)
}

// ConsultCallID is the call-id transferd gives the consult call of a
// transfer. It is derived from the transfer id, so that after a crash or
// a lost response the call can be found again instead of dialled twice.
func ConsultCallID(transferID string) string {
	return "transferd-" + strings.ToLower(strings.TrimPrefix(transferID, "tr_"))
}

// callRequest is the official CallRequest schema, hyphenated keys.
type callRequest struct {
	Synchronous string `json:"synchronous"`
	CallID      string `json:"call-id"`
	TermUser    string `json:"call-term-user"`
	AutoAnswer  string `json:"auto-answer-enabled,omitempty"`
}

// Dial implements orchestrator.Provider (guide step 4): click-to-call
// from the agent to the target with our own call-id. The engine sends it
// at most once per transfer: creating a call is not idempotent, and a PBX
// may accept a duplicate call-id as a second call. An answer that is lost
// leaves the outcome unknown; the engine watches for the call-id.
func (c *Client) Dial(ctx context.Context, t *orchestrator.Transfer) (orchestrator.LegRef, error) {
	id := ConsultCallID(t.ID)
	leg := orchestrator.LegRef{CallID: id}
	body := callRequest{Synchronous: "no", CallID: id, TermUser: t.Request.Target}
	if c.autoAnswer {
		body.AutoAnswer = "yes"
	}
	err := c.do(ctx, request{op: "create_call", method: http.MethodPost, path: c.userPath(&t.Request), body: body}, nil)
	if ev := orchestrator.EvidenceOf(err); ev != nil && ev.Status == http.StatusConflict {
		// The call-id is this transfer's own, so a live call with it is
		// the consult this request created before its answer was lost on
		// the way (the PBX may not list it yet). What status a duplicate
		// call-id gets is not documented [guess]; a 409 is taken to mean
		// exactly this.
		return leg, nil
	}
	return leg, err
}

// consultID is the call-id of t's consult call.
func consultID(t *orchestrator.Transfer) string {
	if id := t.Legs.Consult.CallID; id != "" {
		return id
	}
	return ConsultCallID(t.ID)
}

// findConsult returns the consult call's row, or nil when none is listed.
// A listing cut short that does not show it is an error: it may be on a
// page not read.
func (c *Client) findConsult(ctx context.Context, t *orchestrator.Transfer, id string) (*activeCall, error) {
	calls, cut, err := c.listCalls(ctx, &t.Request)
	if err != nil {
		return nil, err
	}
	for i := range calls {
		if calls[i].OrigCallID == id || calls[i].ByCallID == id {
			return &calls[i], nil
		}
	}
	if cut != nil {
		// The consult, a CallRequest of the agent's, is in the agent's own
		// listing until a join: read whole there, a PBX that ignores start
		// shows it past the domain's first page (userCalls). Not shown, it
		// stays unknown.
		rows, _ := c.userCalls(ctx, t.Request.Call.Domain, t.Request.Call.User)
		for i := range rows {
			if rows[i].OrigCallID == id || rows[i].ByCallID == id {
				return &rows[i], nil
			}
		}
		return nil, cutErr("netsapiens.find_consult", cut)
	}
	return nil, nil
}

// WatchKey implements orchestrator.Provider: one listing of a domain
// serves every transfer in it.
func (c *Client) WatchKey(t *orchestrator.Transfer) string {
	return strings.ToLower(t.Request.Call.Domain)
}

// Read implements orchestrator.Provider (guide step 5, shared): one
// "Read Active Calls in Domain" shows the callers' sessions and the
// consult calls of every transfer in the domain.
func (c *Client) Read(ctx context.Context, _ string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	if len(ts) == 0 {
		return newView(nil), nil
	}
	calls, cut, err := c.listDomain(ctx, ts[0].Request.Call.Domain)
	if err != nil {
		return nil, err
	}
	if cut != nil {
		calls = c.agentsCalls(ctx, calls, ts)
	}
	v := newView(calls)
	if extra, unsure := c.confirmCallers(ctx, v, ts, cut != nil); len(extra) > 0 || len(unsure) > 0 {
		if len(extra) > 0 {
			v = newView(append(calls, extra...))
		}
		v.unsure = unsure
	}
	v.gone = &c.gone
	v.cut = cut
	v.youngDial = c.youngDial
	return v, nil
}

// agentsCalls adds to calls, a listing cut short, the rows of the agents'
// own listings (userCalls) of transfers whose join was not sent and whose
// caller's call or consult the listing does not show: on a PBX that
// ignores start, a domain busier than a page shows its first page only,
// and a consult past it was never seen (the transfer waited unknown for
// its end, and was given up). Until the join, both sessions are the
// agent's. The listing stays cut: a call neither shows is still unknown.
// A user is read once, and only where the PBX ignores start.
func (c *Client) agentsCalls(ctx context.Context, calls []activeCall, ts []*orchestrator.Transfer) []activeCall {
	if !c.startIgnored.Load() {
		return calls
	}
	var v *view
	read := map[string]bool{}
	var seen map[rowKey]bool
	var buf [8]int32
	for _, t := range ts {
		user := strings.ToLower(t.Request.Call.User)
		if !t.Sent.Join.IsZero() || user == "" || read[user] {
			continue
		}
		if v == nil {
			v = newView(calls)
		}
		caller := t.Legs.Caller.CallID
		shown := (caller == "" || len(v.rowsOf(buf[:0], caller)) > 0) &&
			(t.Sent.Dial.IsZero() || len(v.rowsOf(buf[:0], consultID(t))) > 0)
		if shown {
			continue
		}
		read[user] = true
		rows, whole := c.userCalls(ctx, t.Request.Call.Domain, t.Request.Call.User)
		if !whole {
			continue
		}
		if seen == nil {
			seen = make(map[rowKey]bool, len(calls))
			for i := range calls {
				seen[keyOf(&calls[i])] = true
			}
		}
		for i := range rows {
			if k := keyOf(&rows[i]); !seen[k] {
				seen[k] = true
				calls = append(calls, rows[i])
			}
		}
	}
	return calls
}

// confirmCallers reads one by one the callers' calls that the listing
// does not show, of transfers whose join was not sent (after it, the
// agent no longer addresses the caller's call, and nothing is sent to the
// caller without a reading that shows it; such a call is still read, under
// the agent's user and the target's, but only a row that shows it counts).
// A listing that leaves a live
// call out — a row being rewritten (a hold), a page the PBX cut short
// (list endpoints honour limit and start; a default page size is not
// documented) — would otherwise say the caller hung up, and the caller
// would stay held. It returns the calls read (to be listed with the
// others) and the ids it could not read either way (unknown, not gone:
// view.unsure). A call read as ended (a 404; for the caller, one the
// agent's own leg corroborates, below) is gone for good and not read
// again (Client.gone).
//
// It does the same for the consult call where confirmsConsult says (a
// consult a reading showed before, while no join was sent; a tombstone's
// consult never seen, past the visibility window): the engine takes a
// consult seen and then not listed for the target gone (hung up, busy,
// not answered), fails the transfer and hangs the consult up, so a
// listing that leaves it out once (a row rewritten as the target answers)
// ended a consult that was up, and said the target hung up. The consult
// is read by our call-id, which a CallRequest names so that the call can
// be "read back later" [doc]. After a join its absence is what is
// expected, and is not read. After a hang-up, past the window, a 200
// that does not show it leaves the listing standing, as before it was
// read.
//
// Only a 404 says a call read by its id has ended, and only of a call
// older than the visibility window (Client.young: the consult since its
// dial, the caller's call since the transfer was asked for and since the
// dial, whose session may now carry it): behind a load
// balancer, an API node lagging behind the one that listed a call answers
// 404 for a call it has not seen yet. A 404 of a younger call is unknown,
// and not remembered. A 200 whose body does
// not show the call asked for (an empty object, an empty list, null, no
// body, another call's row) says nothing reliable about it, and is an
// unknown reading like a 5xx: taken for a 404 (as it was), it said the
// caller hung up, or the target, of a call that may well be up.
//
// The caller's call is read under the agent's user, and its call-id is
// the caller's leg, not the agent's: whether the PBX resolves another
// party's leg under a user's path is undocumented [guess], and one that
// scopes the read to the user's own leg answers 404 however the caller
// is. Taken for the caller gone, that 404 ended the transfer as
// caller_hung_up at the first listing that left the caller out, and the
// caller stayed held. So a 404 there is checked against the agent's own
// leg, which the guide addresses under the agent's user (the hold): a row
// of it that carries the caller shows the caller; a 404, or a row of it
// without the caller, corroborates the caller's 404 (before the join the
// caller's call is the agent's call: a caller who hangs up ends it). The
// consult's call-id is the agent's own leg (a CallRequest of the agent's
// user), and is read as it is.
func (c *Client) confirmCallers(ctx context.Context, v *view, ts []*orchestrator.Transfer, cut bool) (extra []activeCall, unsure []string) {
	var buf [8]int32
	// readUnder reads call id under user: whether a row carries what
	// carries looks for (those rows go to extra), and the read's error.
	readUnder := func(t *orchestrator.Transfer, user, id string, carries func(*activeCall) bool) (shown bool, err error) {
		rows, err := c.readByIDUnder(ctx, t, user, id)
		for i := range rows {
			if err == nil && carries(&rows[i]) {
				extra, shown = append(extra, rows[i]), true
			}
		}
		return shown, err
	}
	// read reads call id under t's user.
	read := func(t *orchestrator.Transfer, id string, carries func(*activeCall) bool) (shown bool, err error) {
		return readUnder(t, t.Request.Call.User, id, carries)
	}
	notFound := func(err error) bool { return orchestrator.KindOf(err) == orchestrator.KindCallNotFound }
	for _, t := range ts {
		if t.Request.Call.User == "" {
			continue // no user to read by (Validate requires one)
		}
		if l := &t.Legs.Caller; confirmsCaller(t) && !c.gone.has(l.CallID) &&
			len(v.rowsOf(buf[:0], l.CallID)) == 0 && (l.SessionID == "" || len(v.rowsOf(buf[:0], l.SessionID)) == 0) {
			caller := func(ac *activeCall) bool { return carriesCaller(t, ac) }
			shown, err := read(t, l.CallID, caller)
			ended := notFound(err)
			if agent := t.Legs.Agent.CallID; ended && agent != "" && agent != l.CallID {
				agentRow := false
				shown, err = read(t, agent, func(ac *activeCall) bool {
					agentRow = agentRow || ac.hasCall(agent)
					return ac.hasCall(agent) && caller(ac)
				})
				// The agent's leg ended too, or is up in a call without
				// the caller.
				ended = notFound(err) || (err == nil && agentRow && !shown)
			}
			switch {
			case shown:
			case ended && (c.young(t.CreatedAt) || c.youngDial(t)):
				// A node that has not seen the call yet answers 404 too. So
				// it does within the window of the dial: a join sent since
				// the record this reading is made for was saved may have
				// moved the caller's leg into the consult's session (a PBX
				// that keeps it), which such a node does not know yet, and
				// ended the agent's. Remembered as the caller gone, that 404
				// made the observation of the record with the join show the
				// caller gone, and the transfer end caller_hung_up while the
				// caller talked to the target.
				unsure = append(unsure, l.CallID)
			case ended:
				c.gone.add(l.CallID)
			default:
				unsure = append(unsure, l.CallID)
			}
		} else if !t.Sent.Join.IsZero() && l.CallID != "" && !c.gone.has(l.CallID) &&
			len(v.rowsOf(buf[:0], l.CallID)) == 0 && (l.SessionID == "" || len(v.rowsOf(buf[:0], l.SessionID)) == 0) {
			// After a join, a listing that leaves the caller's row out
			// once (the row being rewritten by the join itself) showed the
			// caller gone past the window of the dial, and the transfer
			// ended caller_hung_up while the caller talked to the target.
			// The caller's call is read by its id as before the join, under
			// the agent's user (a PBX that keeps the consult's session
			// keeps it the agent's CallRequest's) and, not shown there,
			// under the target's, which a join that took made a party to
			// it. Only a row that shows it changes the reading. A 404 tells
			// nothing here (the call may be neither user's now, or read
			// only by its own leg's user), nor does a failed read: the
			// listing stands, as it did.
			caller := func(ac *activeCall) bool { return carriesCaller(t, ac) }
			if shown, _ := read(t, l.CallID, caller); !shown {
				if target, ok := targetUser(&t.Request); ok {
					readUnder(t, target, l.CallID, caller)
				}
			}
		}
		if id := consultID(t); confirmsConsult(t, c.youngDial) && !c.gone.has(id) && len(v.rowsOf(buf[:0], id)) == 0 {
			shown, err := read(t, id, func(ac *activeCall) bool { return ac.OrigCallID == id || ac.ByCallID == id })
			switch {
			case shown:
			case notFound(err) && !c.youngDial(t):
				c.gone.add(id)
			case err == nil && !t.Sent.Hangup.IsZero() && !c.youngDial(t):
				// A 200 that does not show it, after its hang-up and past
				// the window: the read tells nothing, and the listing that
				// did not show the consult stands, as it did before such a
				// consult was read (a PBX that answers a read of an ended
				// call so would otherwise keep every transfer given back
				// unverified for good).
				c.gone.add(id)
			default:
				// Unreadable, or a 404 of a consult younger than the
				// visibility window, which an API node lagging behind the
				// one that listed it answers: it is not taken for the
				// target gone (the transfer ended target_hung_up while the
				// target talked to the agent), and not remembered.
				unsure = append(unsure, id)
			}
		} else if id := consultID(t); cut && t.Sent.Join.IsZero() && !t.Sent.Dial.IsZero() && !c.gone.has(id) && len(v.rowsOf(buf[:0], id)) == 0 {
			// Before a join, on a listing cut short, a consult never seen
			// that the agent's own listing (agentsCalls) does not show
			// either — a user's listing narrower than the notes infer, the
			// consult past a page of it, an agent's listing not read whole
			// — was unknown at every reading, and the transfer could not
			// complete. It is the agent's CallRequest, whose call-id is
			// there to read the call back [doc]: read by it, a row shows
			// it, and a 404 past the window of the dial is the consult
			// gone, as a listing read whole would have shown. Anything else
			// leaves it unknown, as it was.
			shown, err := read(t, id, func(ac *activeCall) bool { return ac.OrigCallID == id || ac.ByCallID == id })
			if !shown && notFound(err) && !c.youngDial(t) {
				c.gone.add(id)
			}
		} else if id := consultID(t); cut && !t.Sent.Join.IsZero() && !c.gone.has(id) && len(v.rowsOf(buf[:0], id)) == 0 {
			// After a join, on a listing cut short (a PBX that ignores
			// start, in a domain busier than a page), a consult not listed
			// may be on a page not read: its absence, which a join that
			// took leaves, was unknown at every reading, and the transfer
			// given up unverified with the caller talking to the target.
			// It is read by its call-id as after a join that did not take
			// (below): only a row that shows it, or a 404 past the window,
			// changes the reading.
			shown, err := read(t, id, func(ac *activeCall) bool { return ac.OrigCallID == id || ac.ByCallID == id })
			if !shown && notFound(err) && !c.youngDial(t) {
				c.gone.add(id)
			}
		} else if id := consultID(t); joinShownNotTaken(v, t) && !c.gone.has(id) && len(v.rowsOf(buf[:0], id)) == 0 {
			// After a join that this listing shows did not take (the
			// caller's row still carries the agent's leg), a consult seen
			// and not listed was taken for the target gone: the transfer
			// failed target_hung_up, the join's second form never went
			// out, and the recovery hung up the consult the agent and the
			// target were talking on. It is read by its call-id as before
			// the join; only a row that shows it changes the reading (a
			// 404 past the window is the consult gone, as before the
			// join), anything else leaves the listing standing, as it did.
			shown, err := read(t, id, func(ac *activeCall) bool { return ac.OrigCallID == id || ac.ByCallID == id })
			if !shown && notFound(err) && !c.youngDial(t) {
				c.gone.add(id)
			}
		}
	}
	return extra, unsure
}

// joinShownNotTaken reports whether v shows that t's join, sent, did not
// take, while the consult was seen before: a row of the caller's call
// that still carries the agent's leg (a join that took replaces that leg,
// or ends the caller's session).
func joinShownNotTaken(v *view, t *orchestrator.Transfer) bool {
	agent := t.Legs.Agent.CallID
	if t.Sent.Join.IsZero() || !t.Seen.Consult || agent == "" {
		return false
	}
	var buf [8]int32
	for _, r := range v.rowsOf(buf[:0], agent) {
		if ac := v.call(r); ac.hasCall(agent) && carriesCaller(t, &ac) {
			return true
		}
	}
	return false
}

// young reports whether a call that came to be at since (the zero time:
// long ago) may still be unknown to an API node: within the visibility
// window (Client.window).
func (c *Client) young(since time.Time) bool {
	return !since.IsZero() && c.now().Before(since.Add(c.window))
}

// youngDial reports whether t's consult may still be unknown to an API
// node: within the visibility window of its dial's answer (dialAnswered).
func (c *Client) youngDial(t *orchestrator.Transfer) bool { return c.young(c.dialAnswered(t)) }

// dialAnswered is when t's consult came to be, as far as the windows of
// the dial are concerned: when the dial's request was answered, the dial
// step's end (orchestrator.Transfer.StepEnd), as the engine counts its own
// window of the consult (consultDueAt). Sent.Dial is when the dial was
// decided, before its intent was saved and its request sent: counted from
// there, a dial answered late (a slow create, the adapter's retries, a
// slow save) left the PBX no time to list the call it had just created,
// and a lagging node's 404 or listing a moment after the answer was taken
// for the consult gone (the transfer failed target_hung_up, its consult
// hung up while the target was being rung), the join's consult not listed
// for a refusal, the caller moved into the consult's session for the
// caller gone. A dial step a stopped process left unfinished counts until
// the step timeout after it began, as the engine counts it: its request
// may have been answered as late as that. Sent.Dial is left only for a
// record without a dial step (none was made since: one decided and not
// saved with its intent yet, a dial sent again whose step has not begun),
// and is taken when later than the step's end for the same reason.
func (c *Client) dialAnswered(t *orchestrator.Transfer) time.Time {
	at := t.Sent.Dial
	if at.IsZero() {
		return at
	}
	if end := t.StepEnd(orchestrator.StepDial, c.stepTimeout); end.After(at) {
		at = end
	}
	return at
}

// confirmsCaller reports whether t's caller's call, when not listed, is
// read by its call-id before the reading counts (confirmCallers): it is
// known, and no join was sent.
func confirmsCaller(t *orchestrator.Transfer) bool {
	return t.Legs.Caller.CallID != "" && t.Sent.Join.IsZero()
}

// confirmsConsult reports whether t's consult, when not listed, is read by
// its call-id before the reading counts (confirmCallers), while no join
// was sent (after it, the consult's absence is what is expected, and our
// call-id may name the caller's call; a consult seen, after a join that
// the listing shows did not take, is still read, joinShownNotTaken, but
// only a row that shows it or a 404 past the window counts):
//
//   - once a reading showed it, before a hang-up and after one: a listing
//     that leaves it out once (a row rewritten as the target answers)
//     ended a consult that was up, and said the target hung up; within the
//     visibility window of the dial's answer (youngDial), an API node
//     lagging behind leaves it out whether the hang-up took or not (one
//     such node may have answered the hang-up's DELETE 404 too), and the
//     recovery took that listing for the consult ended and verified it
//     with the consult up; past the window, a listing that looks whole may
//     still leave a call out (a PBX paging by a size of its own below
//     TRANSFERD_NETSAPIENS_LIST_LIMIT answers a short first page, the end
//     of a listing as far as a client can tell);
//   - never seen, once the outcome owes the late leg (t.Cleanup: a
//     tombstone) and the dial's answer is older than the window. The
//     tombstone took listings that did not show the consult for no leg
//     alive, and a consult whose hang-up was answered 404 before it could
//     be addressed, and that the target then answered, stayed up: the
//     agent talking to the target of a cancelled transfer. (Before the
//     outcome, such a consult is not read: a reading made for the record
//     as last saved, before its hang-up, would not have read it, and the
//     observation of the record since would be unknown for nothing.)
//
// Read by its call-id, a 404 past the window is the consult gone,
// remembered (Client.gone: not read again), so this costs a request or
// two for each transfer given back.
func confirmsConsult(t *orchestrator.Transfer, youngDial func(*orchestrator.Transfer) bool) bool {
	switch {
	case !t.Sent.Join.IsZero():
		return false
	case t.Seen.Consult:
		return true
	}
	return t.Cleanup != nil && !t.Sent.Hangup.IsZero() && !t.Sent.Dial.IsZero() && youngDial != nil && !youngDial(t)
}

// view is one listing of a domain, kept compact: a watcher keeps its last
// view for as long as its domain has a transfer, and with the decoded rows
// and a map of their ids the views were the largest part of the heap at
// tens of thousands of parked transfers (about 550 bytes a call; this
// form kept about 210: TestViewIsCompact, and docs/benchmarks.md,
// fifteenth pass; about 260 since it also keeps the URIs' user parts and
// the dialed number, which show a PSTN target). The rows' fields are
// copied back to back into one string; a row is where each of its fields
// ends in it; the index holds a hash of every call-id (orig, term, by)
// and session id with its row, sorted, so that each watched transfer's
// observation costs a few binary searches, not a scan of the domain's
// calls. A listing is at most
// maxListing long, so its fields fit 32-bit offsets with room to spare.
type view struct {
	text  string
	ends  [][nRowFields]uint32 // where each field of each row ends in text (view.field)
	index []uint64             // hash<<32 | row, sorted
	hash  func(string) uint32
	// unsure: callers' call-ids neither listed nor readable one by one
	// (Client.confirmCallers): their callers are unknown, not gone.
	unsure []string
	// gone: the client's calls known to have ended (Client.gone); a
	// consult seen before and not listed is gone only if it is there.
	gone *goneCalls
	// cut: the listing may leave calls out (listDomain); a call it does
	// not show is unknown unless read as ended (gone).
	cut error
	// youngDial is Client.youngDial (confirmsConsult).
	youngDial func(*orchestrator.Transfer) bool
}

var viewSeed = maphash.MakeSeed()

func hashID(id string) uint32 { return uint32(maphash.String(viewSeed, id)) }

func newView(calls []activeCall) *view { return newViewHashed(calls, hashID) }

// newViewHashed is newView with the index's hash function: tests make
// every id collide. Two ids may share a hash: a lookup compares the row's
// ids themselves (view.rowsOf).
func newViewHashed(calls []activeCall, hash func(string) uint32) *view {
	size, ids := 0, 0
	for i := range calls {
		fs := rowFields(&calls[i])
		for _, f := range fs {
			size += len(f)
		}
		for _, f := range idFields {
			if fs[f] != "" {
				ids++
			}
		}
	}
	var text strings.Builder
	text.Grow(size)
	v := &view{ends: make([][nRowFields]uint32, len(calls)), index: make([]uint64, 0, ids), hash: hash}
	for i := range calls {
		fs := rowFields(&calls[i])
		for f, s := range fs {
			text.WriteString(s)
			v.ends[i][f] = uint32(text.Len())
		}
		for _, f := range idFields {
			if fs[f] != "" {
				v.index = append(v.index, uint64(hash(fs[f]))<<32|uint64(i))
			}
		}
	}
	v.text = text.String()
	slices.Sort(v.index)
	return v
}

// rowFields are a row's fields in rowField order, as a view stores them.
func rowFields(ac *activeCall) [nRowFields]string {
	return [nRowFields]string{
		fServer: ac.Server, fSession: ac.SessionID, fOrigCallID: ac.OrigCallID, fTermCallID: ac.TermCallID,
		fOrigUser: ac.OrigUser, fTermUser: ac.TermUser, fOrigInfo: ac.OrigInfo, fTermInfo: ac.TermInfo,
		fByCallID: ac.ByCallID, fOrigURI: ac.OrigURIUser, fTermURI: ac.TermURIUser, fDialed: ac.Dialed,
	}
}

// idFields are the fields a view indexes a row by.
var idFields = [...]rowField{fOrigCallID, fTermCallID, fByCallID, fSession}

// field is field f of row i, sharing the view's text: it starts where
// the field before it ends, the row's first where the row before ends.
func (v *view) field(i int32, f rowField) string {
	var start uint32
	switch {
	case f > 0:
		start = v.ends[i][f-1]
	case i > 0:
		start = v.ends[i-1][nRowFields-1]
	}
	return v.text[start:v.ends[i][f]]
}

// call is row i, its fields sharing the view's text.
func (v *view) call(i int32) activeCall {
	return activeCall{
		Server: v.field(i, fServer), SessionID: v.field(i, fSession),
		OrigCallID: v.field(i, fOrigCallID), TermCallID: v.field(i, fTermCallID),
		OrigUser: v.field(i, fOrigUser), TermUser: v.field(i, fTermUser),
		OrigInfo: v.field(i, fOrigInfo), TermInfo: v.field(i, fTermInfo),
		ByCallID:    v.field(i, fByCallID),
		OrigURIUser: v.field(i, fOrigURI), TermURIUser: v.field(i, fTermURI), Dialed: v.field(i, fDialed),
	}
}

// rowsOf appends the rows that carry id (none for an empty id).
func (v *view) rowsOf(rows []int32, id string) []int32 {
	if id == "" {
		return rows
	}
	h := v.hash(id)
	i, _ := slices.BinarySearch(v.index, uint64(h)<<32)
	for ; i < len(v.index) && uint32(v.index[i]>>32) == h; i++ {
		r := int32(v.index[i])
		for _, f := range idFields {
			if v.field(r, f) == id {
				rows = append(rows, r)
				break
			}
		}
	}
	return rows
}

// Observe implements orchestrator.View: the rows that carry t's ids,
// judged as observe judges a whole listing.
func (v *view) Observe(t *orchestrator.Transfer) (orchestrator.Observation, error) {
	var buf [8]int32
	rows := buf[:0]
	for _, id := range [...]string{consultID(t), t.Legs.Caller.CallID, t.Legs.Agent.CallID, t.Legs.Caller.SessionID} {
		rows = v.rowsOf(rows, id)
	}
	slices.Sort(rows)
	rows = slices.Compact(rows)
	sub := make([]activeCall, len(rows))
	for i, r := range rows {
		sub[i] = v.call(r)
	}
	obs, odd := observe(t, sub)
	if odd != nil {
		return orchestrator.Observation{}, orchestrator.E("netsapiens.observe", orchestrator.KindProviderUnavailable, odd)
	}
	if obs.Caller == orchestrator.CallerGone {
		switch id := t.Legs.Caller.CallID; {
		case !t.Sent.Join.IsZero() && v.youngDial != nil && v.youngDial(t) && (v.gone == nil || !v.gone.has(id)):
			// A join may have made the consult's session, dialled a moment
			// ago, the caller's call (a PBX that keeps it), which an API
			// node lagging behind leaves out of its listing: taken for the
			// caller gone, a join that took was reported unknown or the
			// caller's hang-up.
			return orchestrator.Observation{}, orchestrator.E("netsapiens.observe", orchestrator.KindProviderUnavailable,
				errors.New("the caller's call is not listed a moment after the consult was dialled and a join sent: whether it is up is unknown"))
		case slices.Contains(v.unsure, id):
			return orchestrator.Observation{}, orchestrator.E("netsapiens.observe", orchestrator.KindProviderUnavailable,
				errors.New("the caller's call is not listed and could not be read: whether it is up is unknown"))
		case confirmsCaller(t) && (v.gone == nil || !v.gone.has(id)):
			// Not listed, and not read as ended: the reading was made for
			// a record that had sent a join, whose caller is not read one
			// by one (a watcher reads for the records as last saved), and
			// the join was refused since. Taken as gone, the refusal was
			// blamed on the caller's hang-up, and the caller was not unheld
			// until a later reading showed them held.
			return orchestrator.Observation{}, orchestrator.E("netsapiens.observe", orchestrator.KindProviderUnavailable,
				errors.New("the caller's call is not listed and was not read as ended: whether it is up is unknown"))
		}
	}
	if v.cut != nil {
		// A listing cut short: a call it does not show may be on a page
		// not read. Only one read by its id as ended is gone.
		ended := func(id string) bool { return v.gone != nil && v.gone.has(id) }
		if obs.Caller == orchestrator.CallerGone && !ended(t.Legs.Caller.CallID) {
			return orchestrator.Observation{}, orchestrator.E("netsapiens.observe", orchestrator.KindProviderUnavailable,
				fmt.Errorf("the caller's call is not listed: %w", v.cut))
		}
		if obs.Consult == orchestrator.ConsultAbsent && !t.Sent.Dial.IsZero() && !ended(consultID(t)) {
			return orchestrator.Observation{}, orchestrator.E("netsapiens.observe", orchestrator.KindProviderUnavailable,
				fmt.Errorf("the consult call is not listed: %w", v.cut))
		}
	}
	if obs.Consult == orchestrator.ConsultAbsent && confirmsConsult(t, v.youngDial) && (v.gone == nil || !v.gone.has(consultID(t))) {
		// Not listed, and not read as ended: the read failed, or the
		// reading was made for a record that had not seen the consult yet
		// (a watcher reads for the records as last reconciled).
		return orchestrator.Observation{}, orchestrator.E("netsapiens.observe", orchestrator.KindProviderUnavailable,
			errors.New("the consult call is not listed and was not read as ended: whether it is up is unknown"))
	}
	if err := unrecognisedJoin(t, obs); err != nil {
		return orchestrator.Observation{}, err
	}
	// The observation outlives the view (the watcher keeps the last one,
	// the engine saves the consult's ids), and a string that shares the
	// view's text keeps all of it alive: one such id per transfer kept
	// a listing of every reading, 18 MB more heap at 10,000 parked. The
	// ids already saved are the usual case and cost nothing.
	obs.ConsultLeg.SessionID = detach(obs.ConsultLeg.SessionID, t.Legs.Consult.SessionID)
	obs.ConsultLeg.Server = detach(obs.ConsultLeg.Server, t.Legs.Consult.Server)
	return obs, nil
}

// detach returns s as a string of its own: known when they are equal,
// else a copy.
func detach(s, known string) string {
	if s == known {
		return known
	}
	return strings.Clone(s)
}

// observe judges the rows that carry t's ids. The error says that the
// caller's call, with the agent, shows a state that is neither held nor
// connected (errUnknownState).
func observe(t *orchestrator.Transfer, calls []activeCall) (orchestrator.Observation, error) {
	consultID := consultID(t)
	var obs orchestrator.Observation
	var caller, consult *activeCall
	callerState := orchestrator.CallerGone
	for i := range calls {
		ac := &calls[i]
		switch {
		case carriesCaller(t, ac):
			// The caller's call first. Which session survives a join is
			// undocumented [guess]: a PBX that keeps the consult's session
			// lists the joined call with our call-id (call-by-call-id) and
			// the caller's call-id both, and that row is the caller with
			// the target, not a consult leg of ours. A row showing the
			// caller with the target wins over another that carries the
			// caller (a PBX moving the caller's leg may list both a moment).
			if st := rowCallerState(t, ac); caller == nil || callerState != orchestrator.CallerTransferred {
				caller, callerState = ac, st
			}
		case ac.OrigCallID == consultID || ac.ByCallID == consultID:
			obs.ConsultLegs++
			// The answered one, if a duplicate call-id made two.
			if consult == nil || (ac.TermInfo == "active" && ac.OrigInfo == "active") {
				consult = ac
			}
		}
	}
	obs.Caller = callerState
	if (callerState == orchestrator.CallerHeld || callerState == orchestrator.CallerConnected) && !knownStates(caller) {
		return obs, fmt.Errorf("%w: the caller's call with the agent shows %q and %q", errUnknownState, caller.OrigInfo, caller.TermInfo)
	}
	// Held or connected only ever comes from a row that carries the
	// agent's leg (rowCallerState): a join that took would have taken it.
	obs.CallerWithAgent = callerState == orchestrator.CallerHeld || callerState == orchestrator.CallerConnected
	if obs.Caller == orchestrator.CallerUnknown {
		obs.Detail = "the caller's call no longer includes the agent or the target"
	}
	if consult != nil {
		// NetSapiens does not say why a call ended (busy, rejected and
		// unanswered all just disappear), so an absent consult is only
		// "not listed": the engine tells "not yet" from "gone".
		obs.ConsultLeg = orchestrator.LegRef{SessionID: consult.SessionID, Server: consult.Server}
		obs.Consult = orchestrator.ConsultRinging
		if consult.TermInfo == "active" && consult.OrigInfo == "active" {
			obs.Consult = orchestrator.ConsultAnswered
		}
	}
	return obs, nil
}

// errUnknownState: see knownStates.
var errUnknownState = errors.New("a state transferd does not know: whether the caller is held is unknown")

// knownStates reports whether a row that carries the caller and the agent
// shows states transferd can judge: a leg "held" (held), or every leg
// that shows a state "active" (connected). The value set of
// call-orig-info and call-term-info is undocumented beyond active,
// alerting and held [guess]; a word not foreseen (another spelling of
// held, a state between the two) read as connected, and a caller whose
// unhold was accepted and not applied was reported given back, verified,
// while held, and after a join that did not take no unhold was ever sent
// (the engine unholds there only a caller it sees held). A leg that shows
// no state says nothing either way, as before.
func knownStates(ac *activeCall) bool {
	if ac.held() {
		return true
	}
	active := false
	for _, info := range [...]string{ac.OrigInfo, ac.TermInfo} {
		switch info {
		case "active":
			active = true
		case "":
		default:
			return false
		}
	}
	return active
}

// carriesCaller reports whether a row is the caller's call: it carries
// the caller's call-id or the caller's session.
func carriesCaller(t *orchestrator.Transfer, ac *activeCall) bool {
	return ac.hasCall(t.Legs.Caller.CallID) || (ac.SessionID != "" && ac.SessionID == t.Legs.Caller.SessionID)
}

// rowCallerState is what a row that carries the caller shows of them.
func rowCallerState(t *orchestrator.Transfer, ac *activeCall) orchestrator.CallerState {
	switch {
	case ac.hasCall(t.Legs.Agent.CallID):
		if ac.held() {
			return orchestrator.CallerHeld
		}
		return orchestrator.CallerConnected
	case joinedToTarget(t, ac):
		return orchestrator.CallerTransferred
	}
	return orchestrator.CallerUnknown
}

// held reports whether a leg of the row shows "held": which leg does is
// undocumented, and either means held.
func (ac *activeCall) held() bool { return ac.OrigInfo == "held" || ac.TermInfo == "held" }

// party is one leg of a row as far as telling who it is goes.
type party struct{ user, uriUser string }

// joinedToTarget reports whether a row that carries the caller, and not
// the agent, shows them connected to the target. The caller's party is
// left out where its call-id tells which leg it is. The target is
// recognised by
//   - the other party's user (an extension: call-term-user "1010");
//   - the user part of its URI: a PSTN or gateway party has no user
//     (the spec's example leg has call-term-user "", call-term-domain "*"
//     and call-term-uri "sip:18587645200@srv.lcr.thinq.com" [doc]);
//   - for such a party without a user, the session's dialed number;
//   - or the row being our consult's own session (its call-session-id,
//     or our call-id as call-by-call-id), where the caller took the
//     agent's place opposite the target: a PBX that keeps the consult's
//     session when it joins [guess]. Unless the other party is the agent.
//
// What the join leaves in the caller's row when the PBX keeps the
// caller's session is the consult's target leg, with the consult's
// call-term-call-id; that id is not kept in a transfer's record (there
// is no field of LegRef for it), so it is not used.
func joinedToTarget(t *orchestrator.Transfer, ac *activeCall) bool {
	target := t.Request.Target
	if target == "" {
		return false
	}
	orig, term := party{ac.OrigUser, ac.OrigURIUser}, party{ac.TermUser, ac.TermURIUser}
	others := []party{orig, term} // matched by its session only: either may be the target
	switch id := t.Legs.Caller.CallID; {
	case id != "" && ac.OrigCallID == id:
		others = others[1:]
	case id != "" && ac.TermCallID == id:
		others = others[:1]
	}
	for _, p := range others {
		if sameUser(p.user, target) || sameNumber(p.uriUser, target) || (p.user == "" && sameNumber(ac.Dialed, target)) {
			return true
		}
	}
	id := consultID(t)
	ours := ac.ByCallID == id || ac.OrigCallID == id || ac.TermCallID == id ||
		(t.Legs.Consult.SessionID != "" && ac.SessionID == t.Legs.Consult.SessionID)
	if !ours {
		return false
	}
	for _, p := range others {
		if sameUser(p.user, t.Request.Call.User) {
			return false
		}
	}
	return true
}

// errUnrecognisedJoin: see unrecognisedJoin.
var errUnrecognisedJoin = errors.New("after the join the caller's call shows neither the agent nor a party recognised as the target, " +
	"and the consult is not listed: whether the caller is with the target is unknown")

// unrecognisedJoin turns an observation that cannot be judged into an
// error: once a join may have happened, a caller's call that shows
// neither the agent nor anything recognised as the target, with the
// consult gone from the listing, may well be the caller with a target the
// PBX renders in a way not foreseen here. Reported as CallerUnknown, the
// engine would take the consult's absence for the target hanging up and
// say so, and that the caller was not restored, while the caller talks to
// the target: it is unknown, and an error says so (orchestrator.View).
func unrecognisedJoin(t *orchestrator.Transfer, obs orchestrator.Observation) error {
	if t.Sent.Join.IsZero() || obs.Caller != orchestrator.CallerUnknown || obs.Consult != orchestrator.ConsultAbsent {
		return nil
	}
	return orchestrator.E("netsapiens.observe", orchestrator.KindProviderUnavailable, errUnrecognisedJoin)
}

// transferBody is the attended-transfer body of the guide. It has no
// call-term-user field at all, so that it can never be sent: with it the
// PBX does not complete an attended transfer.
type transferBody struct {
	Hostname             string `json:"hostname"`
	DestinationSessionID string `json:"call-destination-session-id"`
}

// Complete implements orchestrator.Provider (guide step 6). The engine
// sends each form of it at most once and verifies its effect by watching;
// it is never repeated blindly, since after a lost answer the calls may
// already be joined.
//
// Its hostname names a core server: the caller's, or the consult's with
// Config.JoinHostname "consult"; the second form of the join (JoinAgain,
// t.Sent.JoinFirst set) names the other first. Where the two sessions are
// on different cores and the PBX refuses the join with 400 (a wrong
// hostname refused, one side of the guess), nothing was joined: the join
// is sent once more naming the other core, so that it takes whichever
// core the PBX wants. A join accepted (202) or unanswered is not sent
// again here: only the engine may, once a reading showed it did not take.
func (c *Client) Complete(ctx context.Context, t *orchestrator.Transfer) error {
	const op = "netsapiens.transfer"
	consult := t.Legs.Consult
	// The second form names first the core the first form did not.
	secondForm := !t.Sent.JoinFirst.IsZero()
	consultFirst := c.joinConsult != secondForm
	// lookup lists the consult for what the record lacks.
	lookup := func() error {
		ac, err := c.findConsult(ctx, t, consultID(t))
		switch {
		case err != nil:
			return err
		case ac == nil && c.youngDial(t):
			// An API node lagging behind the one that showed the consult
			// leaves it out of its listing a moment after the dial: not
			// listed yet, the join is tried again (it was not sent).
			return orchestrator.E(op, orchestrator.KindProviderUnavailable, errors.New("the consult call is not listed yet"))
		case ac == nil:
			return orchestrator.E(op, orchestrator.KindProviderRejected, errors.New("the consult call is not listed"))
		}
		consult = orchestrator.LegRef{SessionID: ac.SessionID, Server: ac.Server}
		return nil
	}
	if consult.SessionID == "" || (consultFirst && consult.Server == "") {
		if err := lookup(); err != nil && consult.SessionID == "" {
			return orchestrator.NotSent(err) // the transfer request was not sent
		}
	}
	first := t.Legs.Caller.Server
	if consultFirst && consult.Server != "" {
		first = consult.Server
	}
	path := c.userPath(&t.Request) + "/" + seg(t.Legs.Caller.CallID) + "/transfer"
	// notJoinedYet: a join answered 404 while the consult is younger than
	// the visibility window of its dial (the caller's call is older) may
	// come from an API node that has not seen the consult's session yet,
	// and did nothing (notAppliedYet). The join is not sent again here;
	// marked not sent (a 404 joins nothing, which is also why one was
	// always taken for a refusal), it is owed again, and the engine sends
	// it after a pause, as it does a join whose lookup failed. Nothing was
	// applied, so the join sent again is the only one that can take.
	notJoinedYet := func(err error) error {
		if err2 := c.notAppliedYet(op, err, c.dialAnswered(t)); err2 != err {
			return orchestrator.NotSent(err2)
		}
		return err
	}
	join := func(host string) error {
		return c.do(ctx, request{op: "transfer", method: http.MethodPatch, path: path,
			body: transferBody{Hostname: host, DestinationSessionID: consult.SessionID}}, nil)
	}
	err := join(first)
	var refused *APIError
	if !errors.As(err, &refused) || refused.Status != http.StatusBadRequest {
		return notJoinedYet(err)
	}
	if consult.Server == "" && lookup() != nil {
		return err
	}
	other := consult.Server
	if strings.EqualFold(first, other) {
		other = t.Legs.Caller.Server
	}
	if other == "" || strings.EqualFold(first, other) {
		return err
	}
	if err2 := join(other); err2 != nil {
		// The second answer alone says what may have happened: the first
		// was refused.
		return notJoinedYet(fmt.Errorf("naming the other core server %s after %v: %w", other, err, err2))
	}
	return nil
}

var (
	_ orchestrator.JoinExplainer = (*Client)(nil)
	_ orchestrator.JoinRetrier   = (*Client)(nil)
)

// twoCores reports whether t's caller and consult are on different core
// servers, both known.
func twoCores(t *orchestrator.Transfer) bool {
	caller, consult := t.Legs.Caller.Server, t.Legs.Consult.Server
	return caller != "" && consult != "" && !strings.EqualFold(caller, consult)
}

// JoinAgain implements orchestrator.JoinRetrier: a join between calls on
// different core servers that the PBX accepted and that did not take most
// likely named the core it does not want (a PBX that ignores a wrong
// hostname, one side of the guess); its second form names the other.
//
// On one core, a join sent within the visibility window of the dial
// (joinedEarly) may have reached an API node lagging behind the switch
// that did not know the consult's session yet and, on one side of the
// guess, accepted a transfer to a session it does not know and did
// nothing [guess on top of a guess: the other side answers 404, which
// notAppliedYet takes for not sent]. The reading a window after it that
// shows it did not take is what the engine asks before any second form,
// so it is not sent blindly; the second form on one core is the join
// again, and the node that has caught up applies it. Without it such a
// transfer failed provider_error once the verification patience ran out,
// the caller given back from a transfer that would have completed. (On
// two cores the second form names the other core, as before: which of
// the two reasons a join that did not take had, nothing shows, and the
// engine sends one more at most.)
func (c *Client) JoinAgain(t *orchestrator.Transfer) bool { return twoCores(t) || c.joinedEarly(t) }

// joinedEarly reports whether t's join was sent within the visibility
// window of its dial's answer (dialAnswered), by the times the record
// keeps: a join sent a moment after a dial answered late may have met a
// node that did not know the consult yet, as one a moment after a dial
// answered at once.
func (c *Client) joinedEarly(t *orchestrator.Transfer) bool {
	dial, join := c.dialAnswered(t), t.Sent.Join
	if !t.Sent.JoinFirst.IsZero() {
		join = t.Sent.JoinFirst
	}
	return !dial.IsZero() && !join.IsZero() && join.Sub(dial) < c.window
}

// JoinNotTaken implements orchestrator.JoinExplainer: the core servers the
// joins named, for an operator looking at a join that never took.
func (c *Client) JoinNotTaken(t *orchestrator.Transfer) string {
	if !twoCores(t) {
		if !t.Sent.JoinFirst.IsZero() {
			return "it was sent a moment after the dial, when an API node lagging behind may not have known the consult yet, then once more, and neither took"
		}
		return ""
	}
	named, other := t.Legs.Caller.Server, t.Legs.Consult.Server
	if c.joinConsult {
		named, other = other, named
	}
	if !t.Sent.JoinFirst.IsZero() {
		return fmt.Sprintf("it named core server %s, then %s, and neither took", named, other)
	}
	return fmt.Sprintf("its hostname named core server %s; the consult is on %s", named, other)
}

// HangupConsult implements orchestrator.Provider: it disconnects the
// consult by our own call-id, without listing first (NetSapiens also
// lists a consult by call-by-call-id, but addresses it by call-id). A
// call not found is not an error: it ended, or is not listed yet, which
// the engine keeps watching for.
//
// Once a join was sent the session created with our call-id may be the
// caller's call: which session survives a join is undocumented [guess],
// and a PBX that keeps the consult's may still address it by our call-id
// (the call-id a CallRequest names is there to "read back the call later
// or end it" [doc]). Disconnecting it would end the caller's call with
// the target. So after a join the consult is disconnected only when a
// listing shows that no session carrying our call-id carries the caller
// (on a listing cut short, the caller's own call read by its id shows
// it: callersSession; where no read shows the caller, the consult read by
// its id: consultAfterCut); when the listing fails, the hang-up fails too (the
// engine sends it again).
func (c *Client) HangupConsult(ctx context.Context, t *orchestrator.Transfer) error {
	id := consultID(t)
	if !t.Sent.Join.IsZero() {
		calls, cut, err := c.listCalls(ctx, &t.Request)
		if err != nil {
			return err
		}
		listed := false
		for i := range calls {
			ac := &calls[i]
			if ac.OrigCallID == id || ac.ByCallID == id || ac.TermCallID == id || inConsultsSession(t, ac) {
				if carriesCaller(t, ac) {
					// Nothing of ours to end: the session with our call-id
					// is the caller's call now, which readings show.
					return nil
				}
				listed = true
			}
		}
		if cut != nil {
			// Such a session may be on a page not read, and the hang-up
			// was unknown at every try: the consult, the agent talking
			// to the target after a join a reading showed did not take,
			// was never hung up. The caller's own call tells instead.
			switch ours, shown, err := c.callersSession(ctx, t, id); {
			case ours:
				return nil // as a listed session that carries the caller
			case !shown && err != nil:
				return err
			case !shown:
				// No read shows the caller's call (each answered 404):
				// the caller hung up, or the PBX reads only a user's own
				// legs. Left unknown, the consult of a join that did not
				// take, once the caller hung up, rang or talked on,
				// orphaned. The consult itself tells.
				if done, err := c.consultAfterCut(ctx, t, id, cut); done || err != nil {
					return err
				}
				listed = true // the consult read by its id, as listed
			}
		}
		if !listed && c.youngDial(t) {
			// No session with our call-id listed, within the visibility
			// window of the dial: an API node lagging behind leaves out a
			// session it has not seen yet, and the one the join kept may
			// be the caller's call with the target, which a disconnect by
			// our call-id would end.
			return orchestrator.E("netsapiens.disconnect", orchestrator.KindProviderUnavailable,
				errors.New("no call with the consult's call-id is listed yet: whether the join kept it as the caller's call is unknown"))
		}
		if !listed {
			// Past the window, not listed was taken for gone, and the
			// disconnect sent blind. But a listing that looks whole may
			// leave a row out (a PBX paging by a size of its own below
			// TRANSFERD_NETSAPIENS_LIST_LIMIT answers a short first page):
			// the session the join kept, the caller's call with the
			// target, disconnected by our call-id, the completed join
			// undone. So the call is read by its id first.
			if done, err := c.joinedCallRead(ctx, t, id); done || err != nil {
				return err
			}
		}
	}
	rejected := false
	if !t.Answered {
		// What DELETE does to a call still ringing is undocumented: the
		// docs give it for "an active call", and DELETE .../reject, by
		// the orig Call-ID (ours), for "a 'ringing' call prior to any
		// answer event". A PBX that answers DELETE on a ringing call
		// with 200 and leaves it ringing, or refuses it, would keep the
		// target's phone ringing for a transfer that has ended, to be
		// answered into nothing. A reject accepted is the hang-up (a
		// reading that still shows the consult, answered meanwhile,
		// makes the engine send it again); any other answer (the call
		// answered, "not ringing"; a PBX without reject, 404) leaves it
		// to DELETE.
		err := c.do(ctx, request{op: "reject", method: http.MethodDelete,
			path: c.userPath(&t.Request) + "/" + seg(id) + "/reject", safe: true}, nil)
		if err == nil && !hungUpBefore(t) {
			return nil
		}
		// A hang-up was accepted before and the engine sends another: a
		// reading since shows the consult up. A reject accepted (202) is
		// applied later [doc], and one that lands on a call answered
		// meanwhile may do nothing; the transfer, which saw no answer,
		// would send reject after reject, and the consult, the agent
		// talking to the target, stayed up for good. DELETE ends an
		// answered call; a reject accepted still ends a ringing one, so
		// that DELETE's refusal is then no failure.
		rejected = err == nil
	}
	err := c.do(ctx, request{op: "disconnect", method: http.MethodDelete,
		path: c.userPath(&t.Request) + "/" + seg(id), safe: true}, nil)
	if orchestrator.KindOf(err) == orchestrator.KindCallNotFound || (err != nil && rejected) {
		return nil
	}
	return err
}

// callersSession reads, after a join, on a listing cut short, which
// session the caller is in, so that a hang-up by our call-id id cannot
// end it: ours says a row of the caller's call carries id, or is in the
// consult's session (inConsultsSession) (the session the join kept is the
// caller's call now: nothing of ours to end), shown
// that a row shows the caller's call. The caller's call-id is the
// device's own, in one session: shown without id, no session with id
// carries the caller, whatever the pages not read hold (two sessions
// with our call-id, one of them the caller's, is what a read of the
// consult by id cannot rule out). It is read under the agent's user,
// then, where the PBX reads only a user's own legs [guess], by the
// agent's leg that carries it, then under the target's, which a join that
// took made a party to it. Within the visibility window of the join an
// API node lagging behind may show the caller's call as it was before
// it: nothing is read, unknown. A read that fails, or shows no caller,
// leaves it unknown (err, the first failure other than a 404).
func (c *Client) callersSession(ctx context.Context, t *orchestrator.Transfer, id string) (ours, shown bool, err error) {
	caller := t.Legs.Caller.CallID
	if caller == "" || c.young(t.Sent.Join) {
		return false, false, nil
	}
	type byID struct{ user, id string }
	reads := []byID{{t.Request.Call.User, caller}}
	if agent := t.Legs.Agent.CallID; agent != "" && agent != caller {
		reads = append(reads, byID{t.Request.Call.User, agent})
	}
	if target, ok := targetUser(&t.Request); ok {
		reads = append(reads, byID{target, caller})
	}
	for _, r := range reads {
		rows, rerr := c.readByIDUnder(ctx, t, r.user, r.id)
		if rerr != nil {
			if err == nil && orchestrator.KindOf(rerr) != orchestrator.KindCallNotFound {
				err = rerr
			}
			continue
		}
		for i := range rows {
			ac := &rows[i]
			if !carriesCaller(t, ac) || !ac.hasCall(r.id) {
				continue
			}
			if ac.hasCall(id) || ac.ByCallID == id || inConsultsSession(t, ac) {
				return true, true, nil
			}
			shown = true
		}
		if shown {
			return false, true, nil
		}
	}
	return false, false, err
}

// consultAfterCut reads, after a join, on a listing cut short, where no
// read showed the caller's call (callersSession), the call with our
// call-id id under the agent's user, whose CallRequest it is. done means
// nothing is left to disconnect: the read answers 404 past the window of
// the dial (ended, as a listing read whole would show it; or, under a
// PBX that reads only a user's own legs, no longer the agent's call, the
// join having taken), or shows the caller in it (the session the join
// kept). A row of the consult's session (or, its session unknown, of our
// call-id) that carries the agent and not the caller is the consult the
// join left, agent and target still on it: the disconnect goes on (a
// session that a join kept as the caller's call no longer carries the
// agent, who left it). Anything else is unknown (cut): within the window
// a lagging node may not show the consult, and a row of neither kind
// does not say which call our call-id addresses; so is a join younger
// than the window (a lagging node may show the consult's session as it
// was before the join moved the caller in).
func (c *Client) consultAfterCut(ctx context.Context, t *orchestrator.Transfer, id string, cut error) (done bool, err error) {
	if c.young(t.Sent.Join) || c.youngDial(t) {
		return false, cutErr("netsapiens.disconnect", cut)
	}
	rows, err := c.readByID(ctx, t, id)
	switch {
	case orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
		return true, nil
	case err != nil:
		return false, err
	}
	consult := false
	for i := range rows {
		ac := &rows[i]
		withID := ac.OrigCallID == id || ac.ByCallID == id || ac.TermCallID == id
		if (withID || inConsultsSession(t, ac)) && carriesCaller(t, ac) {
			return true, nil
		}
		consults := withID
		if t.Legs.Consult.SessionID != "" {
			consults = inConsultsSession(t, ac)
		}
		if consults && (sameUser(ac.OrigUser, t.Request.Call.User) || sameUser(ac.TermUser, t.Request.Call.User)) {
			consult = true
		}
	}
	if !consult {
		return false, cutErr("netsapiens.disconnect", cut)
	}
	return false, nil
}

// readByID reads call id under t's user (GET …/users/{user}/calls/{id}).
func (c *Client) readByID(ctx context.Context, t *orchestrator.Transfer, id string) (readCall, error) {
	return c.readByIDUnder(ctx, t, t.Request.Call.User, id)
}

// readByIDUnder reads call id under user of t's domain.
func (c *Client) readByIDUnder(ctx context.Context, t *orchestrator.Transfer, user, id string) (readCall, error) {
	var rows readCall
	err := c.do(ctx, request{op: "read_call", method: http.MethodGet,
		path: "/domains/" + seg(t.Request.Call.Domain) + "/users/" + seg(user) + "/calls/" + seg(id), safe: true}, &rows)
	return rows, err
}

// targetUser is r's target as a user of r's domain, when it can be one:
// an extension, or user@domain of that domain.
func targetUser(r *orchestrator.Request) (string, bool) {
	user, dom, qualified := strings.Cut(r.Target, "@")
	if qualified && !strings.EqualFold(dom, r.Call.Domain) {
		return "", false
	}
	return user, userRE.MatchString(user) && !sameUser(user, r.Call.User)
}

// joinedCallRead reads, after a join, the call with the consult's call-id
// id, which a listing did not show, under the agent's user (whose call a
// CallRequest made it). done means nothing is left to disconnect: the
// call carries the caller (the session the join kept, whether or not it
// still shows our call-id: inConsultsSession), or the read
// answers 404 (ended; or, under a PBX that reads only a user's own legs,
// no longer the agent's call, which after a join is the caller's). A
// read that fails is unknown (the error), sent again by the engine.
func (c *Client) joinedCallRead(ctx context.Context, t *orchestrator.Transfer, id string) (done bool, err error) {
	rows, err := c.readByID(ctx, t, id)
	switch {
	case orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
		return true, nil
	case err != nil:
		return false, err
	}
	for i := range rows {
		if ac := &rows[i]; (ac.OrigCallID == id || ac.ByCallID == id || ac.TermCallID == id || inConsultsSession(t, ac)) && carriesCaller(t, ac) {
			return true, nil
		}
	}
	// Shown without the caller, the consult is up. A 200 that shows no
	// such call tells nothing, and the listing stands, as it did before
	// the read (a PBX that answers a read of an ended call so would
	// otherwise fail every hang-up after a join for good). Either way the
	// disconnect goes on.
	return false, nil
}

// inConsultsSession reports whether ac is a row of t's consult's session
// (its call-session-id), whatever ids it shows. A PBX that keeps the
// consult's session at a join moves the caller's leg into it, and may
// show no call-by-* fields on it from then on [guess] while our call-id
// still addresses it [doc: a CallRequest's call-id is there to "read back
// the call later or end it"]: no row then carries our call-id beside the
// caller, and the hang-up after the join, finding none, disconnected our
// call-id, the caller's call with the target. Such a row carrying the
// caller is the caller's call now.
func inConsultsSession(t *orchestrator.Transfer, ac *activeCall) bool {
	return ac.SessionID != "" && ac.SessionID == t.Legs.Consult.SessionID
}

// hungUpBefore reports whether an earlier hang-up of t's consult was
// accepted: the step in progress is the last one.
func hungUpBefore(t *orchestrator.Transfer) bool {
	for i := range t.Steps {
		if s := &t.Steps[i]; s.Name == orchestrator.StepHangup && s.Status == orchestrator.StepSucceeded {
			return true
		}
	}
	return false
}
