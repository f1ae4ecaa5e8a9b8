package netsapiens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A listing answered 2xx with no array is checked against the domain's
// count (TestAListingAnsweredWithoutAnArrayIsCheckedAgainstTheCount). The
// count answered 2xx and saying no number (an empty body or null, the
// same answer cut to nothing that made the listing empty, or an object
// without its total) told "nothing", and the page stood: the domain was
// taken for one without calls, and the join's lookup refused the consult
// not listed (provider_rejected, the join not sent, the transfer failed
// and the consult the agent and target were on hung up), the failure the
// count was asked to rule out. A total written as a string, as a PHP
// controller writes numbers, failed to decode and was taken for a count
// refused, with the same end. Only a count that says a number decides
// now: a 2xx without one is unknown, and a total as a string is read.
func TestACountThatSaysNoNumberLeavesAListingWithoutAnArrayUnknown(t *testing.T) {
	for _, count := range []string{"", "null", "{}", `{"total":null}`, `{"total":"2"}`} {
		t.Run("count "+count, func(t *testing.T) {
			const trID = "tr_01JEMPTYCOUNTXXXXXXXXXXXX0"
			const window = 5 * time.Second
			clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{}, window)
			tr.Seen.Consult, tr.Answered = true, true
			clock.advance(2 * window) // past every window
			empty := ""
			sim.InjectFault(nssim.Fault{Operation: nssim.OpList, Status: 200, Body: &empty, Count: 1})
			sim.InjectFault(nssim.Fault{Operation: nssim.OpCount, Status: 200, Body: &count, Count: 1})
			err := c.Complete(context.Background(), tr)
			if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable || !errors.Is(err, orchestrator.ErrNotSent) {
				t.Fatalf("the join's lookup on a listing answered with no body, the count %q: %v (kind %v), want unknown and not sent",
					count, err, orchestrator.KindOf(err))
			}
			if err := c.Complete(context.Background(), tr); err != nil {
				t.Fatalf("the join on the next listing: %v", err)
			}
		})
	}
	// The other side: a total of none written as a string is a domain
	// without calls, as {"total":0} is.
	t.Run(`count {"total":"0"} of an idle domain`, func(t *testing.T) {
		const trID = "tr_01JEMPTYCOUNTXXXXXXXXXXXX1"
		const window = 5 * time.Second
		clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{}, window)
		tr.Seen.Consult, tr.Answered = true, true
		clock.advance(2 * window)
		for _, s := range sim.Sessions(domain) {
			if err := sim.Hangup(s.SessionID, "term"); err != nil {
				t.Fatal(err)
			}
		}
		tr.Legs.Consult.SessionID = ""
		empty, zero := "", `{"total":"0"}`
		sim.InjectFault(nssim.Fault{Operation: nssim.OpList, Status: 200, Body: &empty, Count: 1})
		sim.InjectFault(nssim.Fault{Operation: nssim.OpCount, Status: 200, Body: &zero, Count: 1})
		err := c.Complete(context.Background(), tr)
		if orchestrator.KindOf(err) != orchestrator.KindProviderRejected || !errors.Is(err, orchestrator.ErrNotSent) {
			t.Fatalf("the join's lookup where the domain counts no calls: %v (kind %v), want refused and not sent", err, orchestrator.KindOf(err))
		}
	})
}
