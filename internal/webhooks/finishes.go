package webhooks

import (
	"errors"

	"github.com/transferd/transferd/internal/store/groupcommit"
)

// Finishes writes the results of attempts in group commits, for a Store
// whose FinishDelivery is a transaction: results that arrive while a
// batch of them is being written are written together in the next, one
// transaction for all (package groupcommit, as the SQL stores write
// saves), and each gets its own verdict. A transfer's events make five to
// eight deliveries, and a transaction for each result cost more than the
// transfer's own saves (docs/benchmarks.md, twenty-fifth and
// twenty-sixth passes). Run stores its results with its claims
// (SettleDeliveries); FinishDelivery serves Drain, whose attempts end
// together.
type Finishes struct {
	q *groupcommit.Queue[*finishReq]
}

// Finished is the verdict on one result of a batch: the delivery as
// stored, and whether the result applied (see Store.FinishDelivery).
type Finished struct {
	Delivery Delivery
	OK       bool
}

// ErrFinishesClosed is the error of a result given after Close.
var ErrFinishesClosed = errors.New("webhooks: the store is closed")

// finishReq is a result waiting for its batch; done has room for its
// verdict.
type finishReq struct {
	d    Delivery
	done chan finishVerdict
}

type finishVerdict struct {
	Finished
	err error
}

// NewFinishes returns a queue whose batches hold at most max results,
// written by write: in one transaction, returning a verdict for each
// result in order, or an error that fails them all (each delivery then
// stays leased, and is tried again once its lease expires). name is the
// store's, for the panic message of a failed batch.
func NewFinishes(name string, max int, write func(ds []Delivery) ([]Finished, error)) *Finishes {
	return &Finishes{q: groupcommit.New(name, max, func(batch []*finishReq) {
		ds := make([]Delivery, len(batch))
		for i, r := range batch {
			ds[i] = r.d
		}
		vs, err := write(ds)
		for i, r := range batch {
			if err != nil {
				r.done <- finishVerdict{err: err}
			} else {
				r.done <- finishVerdict{Finished: vs[i]}
			}
		}
	})}
}

// Finish queues the result d and waits for its batch's verdict. Once
// queued, a result is written or fails with its batch, so Finish waits
// whatever its caller's context says (groupcommit.Commit).
func (f *Finishes) Finish(d Delivery) (Delivery, bool, error) {
	r := &finishReq{d: d, done: make(chan finishVerdict, 1)}
	v, ok := groupcommit.Commit(f.q, r, r.done)
	if !ok {
		return Delivery{}, false, ErrFinishesClosed
	}
	if v.err != nil {
		return Delivery{}, false, v.err
	}
	return v.Delivery, v.OK, nil
}

// Close writes the results already queued; results after it fail.
func (f *Finishes) Close() { f.q.Close() }

// Hold takes the turn to write a batch, for tests (groupcommit.Queue.Hold).
func (f *Finishes) Hold(queued func()) (release func()) { return f.q.Hold(queued) }
