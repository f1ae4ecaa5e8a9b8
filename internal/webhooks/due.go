package webhooks

import (
	"cmp"
	"slices"
	"time"
)

// Ready is a delivery a claim may take: the first pending delivery of
// its endpoint and transfer. At is when it becomes claimable: the later
// of its NextAttempt and the expiry of its lease, if any. The SQL stores
// keep At in a column (ready_at) that is set on such heads only, so that
// a claim never reads a delivery waiting behind another of its transfer.
type Ready struct {
	ID       string
	Endpoint string // the endpoint key
	At       time.Time
	Pos      int64
}

// ReadyAt is when d becomes claimable if it is the head of its endpoint
// and transfer.
func ReadyAt(d Delivery) time.Time {
	if d.LeaseUntil.After(d.NextAttempt) {
		return d.LeaseUntil
	}
	return d.NextAttempt
}

// HeadCandidates reports, for each of an enqueue's deliveries, whether it
// is the first pending one (lowest Seq) of its endpoint and transfer
// among ds: the one delivery of each pair that is its head if the store
// holds no pending delivery of the pair. An SQL store makes it ready as
// it inserts it, under the pair's lock, when that holds, rather than
// writing its row a second time to promote it. That is the case of
// every transfer's first event, and of each event after its transfer's
// deliveries have caught up.
func HeadCandidates(ds []Delivery) []bool {
	first := make(map[[2]string]int, len(ds))
	for i, d := range ds {
		if d.Status != StatusPending {
			continue
		}
		p := [2]string{EndpointKey(d.Tenant, d.Endpoint), d.TransferID}
		if j, ok := first[p]; !ok || d.Seq < ds[j].Seq {
			first[p] = i
		}
	}
	heads := make([]bool, len(ds))
	for _, i := range first {
		heads[i] = true
	}
	return heads
}

// dueOrder is the order claims take deliveries in: earliest claimable
// first, then lowest Pos (an event's deliveries share its Pos), then ID.
func dueOrder(a, b Ready) int {
	return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Pos, b.Pos), cmp.Compare(a.ID, b.ID))
}

// DueLookup is how a store answers PickDue's questions, inside the
// transaction of its claim. Each returns deliveries ready and due at the
// claim's time, in due order (At, then Pos).
type DueLookup struct {
	// Earliest passes up to n, whatever their endpoint, to each, and
	// stops reading when each returns false.
	Earliest func(n int, each func(Ready) bool) error
	// Endpoints returns each endpoint key that has a ready delivery,
	// due or not, with the At of its earliest (in Endpoint and At).
	Endpoints func() ([]Ready, error)
	// OfEndpoint returns up to n of one endpoint key's.
	OfEndpoint func(key string, n int) ([]Ready, error)
}

// WithHeads is q with heads added to what it reads: deliveries that a
// claim's own transaction makes the heads of their pairs (a result ended
// the one before) but has not marked ready yet, so that a claim that
// takes one writes its row once, not a second time to promote it. The
// store marks ready those the claim leaves. heads' At is when each
// becomes claimable (ReadyAt).
func WithHeads(q DueLookup, now time.Time, heads []Ready) DueLookup {
	if len(heads) == 0 {
		return q
	}
	var due []Ready
	for _, h := range heads {
		if !h.At.After(now) {
			due = append(due, h)
		}
	}
	slices.SortFunc(due, dueOrder)
	merged := func(rs []Ready, key string, n int) []Ready {
		for _, h := range due {
			if key == "" || h.Endpoint == key {
				rs = append(rs, h)
			}
		}
		slices.SortFunc(rs, dueOrder)
		return rs[:min(len(rs), n)]
	}
	return DueLookup{
		// The first n of q's n earliest and the due heads are the n
		// earliest of both: whatever q did not read comes after its n.
		Earliest: func(n int, each func(Ready) bool) error {
			var rs []Ready
			if err := q.Earliest(n, func(r Ready) bool { rs = append(rs, r); return true }); err != nil {
				return err
			}
			for _, r := range merged(rs, "", n) {
				if !each(r) {
					break
				}
			}
			return nil
		},
		Endpoints: func() ([]Ready, error) {
			eps, err := q.Endpoints()
			if err != nil {
				return nil, err
			}
			for _, h := range heads {
				i := slices.IndexFunc(eps, func(e Ready) bool { return e.Endpoint == h.Endpoint })
				switch {
				case i < 0:
					eps = append(eps, Ready{Endpoint: h.Endpoint, At: h.At})
				case h.At.Before(eps[i].At):
					eps[i].At = h.At
				}
			}
			return eps, nil
		},
		OfEndpoint: func(key string, n int) ([]Ready, error) {
			rs, err := q.OfEndpoint(key, n)
			if err != nil {
				return nil, err
			}
			return merged(rs, key, n), nil
		},
	}
}

// claimWalk is how many ready deliveries beyond the limit a claim's first
// pass reads, when it skips endpoints, before it turns to the endpoints
// one by one.
const claimWalk = 64

// FirstWalk is how many deliveries PickDue's first Earliest asks for
// when it passes over none (except is empty): a store may read them
// ahead, in the round trip of the statements before its claim, and
// answer that call with them. With no endpoint skipped every delivery
// read is taken, and the limit is all it needs: PostgreSQL reads all it
// is asked for, and a walk of claimWalk more at every claim was four in
// five of the deliveries its claims read (docs/benchmarks.md, thirtieth
// pass).
func FirstWalk(limit int, skip []string) int {
	if len(skip) == 0 {
		return limit
	}
	return limit + claimWalk
}

// PickDue returns the deliveries a claim of up to limit, at now, takes:
// ready, due, to no endpoint in skip, in due order. It reads the earliest
// due first, whatever their endpoint: the claim of a healthy system,
// which reads little more than it takes. When those are mostly to skipped
// endpoints (an endpoint at its share of attempts because it does not
// answer, with a backlog older than everything else), walking past them
// would cost every claim the length of that backlog, inside the store's
// write transaction; instead it reads the other endpoints' own earliest,
// which costs one look per endpoint with a ready delivery.
//
// The deliveries whose IDs are in except are passed over as if they were
// not there: a claim that lost some of those it picked to another
// replica (PostgreSQL) picks again without them.
func PickDue(now time.Time, limit int, skip []string, except map[string]bool, q DueLookup) ([]Ready, error) {
	if limit <= 0 {
		return nil, nil
	}
	takes := func(r Ready) bool { return !except[r.ID] && !slices.Contains(skip, r.Endpoint) }
	walk := FirstWalk(limit, skip) + len(except)
	var out []Ready
	read := 0
	err := q.Earliest(walk, func(r Ready) bool {
		read++
		if takes(r) {
			out = append(out, r)
		}
		return len(out) < limit
	})
	if err != nil {
		return nil, err
	}
	if len(out) == limit || read < walk {
		return out, nil
	}
	eps, err := q.Endpoints()
	if err != nil {
		return nil, err
	}
	eps = slices.DeleteFunc(eps, func(e Ready) bool { return e.At.After(now) || slices.Contains(skip, e.Endpoint) })
	slices.SortFunc(eps, func(a, b Ready) int { return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Endpoint, b.Endpoint)) })
	out = out[:0]
	for _, e := range eps {
		// An endpoint whose earliest comes after the limit-th taken so far
		// has nothing that goes before it.
		if len(out) == limit && e.At.After(out[limit-1].At) {
			break
		}
		rs, err := q.OfEndpoint(e.Endpoint, limit+len(except))
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if takes(r) {
				out = append(out, r)
			}
		}
		slices.SortFunc(out, dueOrder)
		out = out[:min(len(out), limit)]
	}
	return out, nil
}
