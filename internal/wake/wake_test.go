package wake

import (
	"runtime"
	"sync"
	"testing"
)

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// A channel taken before a Notify is closed by it; one taken after is
// not, until the next Notify.
func TestNotifyClosesTheChannelsTakenBeforeIt(t *testing.T) {
	var b Broadcast
	l := b.Listen()
	defer l.Close()
	before := l.Next()
	if closed(before) {
		t.Fatal("closed before any Notify")
	}
	b.Notify()
	if !closed(before) {
		t.Fatal("a Notify after Next did not close its channel")
	}
	after := l.Next()
	if closed(after) {
		t.Fatal("a channel taken after the Notify is closed")
	}
	b.Notify()
	if !closed(after) {
		t.Fatal("the second Notify did not close the channel taken after the first")
	}
}

// Many listeners share the channel one Notify closes; a Notify with none
// allocates nothing (the engine calls it at every save that writes
// events).
func TestManyAndNoListeners(t *testing.T) {
	var b Broadcast
	if n := testing.AllocsPerRun(100, b.Notify); n != 0 {
		t.Errorf("Notify with no listener allocates %v times", n)
	}
	const n = 1000
	var ls []*Listener
	var chans []<-chan struct{}
	for range n {
		l := b.Listen()
		ls = append(ls, l)
		chans = append(chans, l.Next())
	}
	if b.Listeners() != n {
		t.Fatalf("%d listeners, want %d", b.Listeners(), n)
	}
	b.Notify()
	for i, c := range chans {
		if !closed(c) {
			t.Fatalf("listener %d not woken", i)
		}
	}
	for _, l := range ls {
		l.Close()
		l.Close() // twice counts once
	}
	if b.Listeners() != 0 {
		t.Fatalf("%d listeners after all closed", b.Listeners())
	}
	if n := testing.AllocsPerRun(100, b.Notify); n != 0 {
		t.Errorf("Notify once the listeners left allocates %v times", n)
	}
}

// Notifies and waits from many goroutines at once (for -race): every
// waiter that took its channel before a Notify is woken.
func TestConcurrentNotifyAndNext(t *testing.T) {
	var b Broadcast
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				b.Notify()
			}
		}
	}()
	var waiters sync.WaitGroup
	for range 50 {
		waiters.Add(1)
		go func() {
			defer waiters.Done()
			l := b.Listen()
			defer l.Close()
			for range 200 {
				<-l.Next()
			}
		}()
	}
	waiters.Wait()
	close(stop)
	wg.Wait()
	if b.Listeners() != 0 {
		t.Fatalf("%d listeners left", b.Listeners())
	}
}

// A tenant's Notify wakes that tenant's waiters only; NotifyAll wakes
// every tenant's. With no listener, or once they all left, Notify
// allocates nothing and keeps no tenant.
func TestTenantsWakeTheirOwn(t *testing.T) {
	var ts Tenants
	if n := testing.AllocsPerRun(100, func() { ts.Notify("acme") }); n != 0 {
		t.Errorf("Notify with no listener allocates %v times", n)
	}
	acme, acme2, globex := ts.Listen("acme"), ts.Listen("acme"), ts.Listen("globex")
	if n := ts.Listeners(); n != 3 {
		t.Fatalf("%d listeners, want 3", n)
	}
	a, a2, g := acme.Next(), acme2.Next(), globex.Next()
	ts.Notify("acme")
	if !closed(a) || !closed(a2) {
		t.Fatal("acme's Notify did not wake acme's listeners")
	}
	if closed(g) {
		t.Fatal("acme's Notify woke globex's listener")
	}
	ts.Notify("initech") // nobody listens for it
	if closed(g) {
		t.Fatal("a third tenant's Notify woke globex's listener")
	}
	a = acme.Next()
	ts.NotifyAll()
	if !closed(a) || !closed(g) {
		t.Fatal("NotifyAll did not wake every tenant's listeners")
	}
	for _, l := range []*Listener{acme, acme2, globex, acme} {
		l.Close()
	}
	if n := ts.Listeners(); n != 0 {
		t.Fatalf("%d listeners after all closed", n)
	}
	if len(ts.by) != 0 {
		t.Fatalf("%d tenants kept after their listeners left", len(ts.by))
	}
	// A tenant listened to again is woken as before.
	l := ts.Listen("acme")
	defer l.Close()
	c := l.Next()
	ts.Notify("acme")
	if !closed(c) {
		t.Fatal("a listener of a tenant whose listeners had all left was not woken")
	}
}

// Notifies, NotifyAlls, Listens and Closes of several tenants at once
// (for -race): every waiter that took its channel before its tenant's
// Notify is woken.
func TestTenantsConcurrent(t *testing.T) {
	var ts Tenants
	tenants := []string{"a", "b", "c"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, tenant := range tenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					if i == 0 {
						ts.NotifyAll()
					}
					ts.Notify(tenant)
					runtime.Gosched() // leaves the waiters a CPU on a small host
				}
			}
		}()
	}
	var waiters sync.WaitGroup
	for i := range 9 {
		waiters.Add(1)
		go func() {
			defer waiters.Done()
			for range 10 {
				l := ts.Listen(tenants[i%len(tenants)])
				for range 5 {
					<-l.Next()
				}
				l.Close()
			}
		}()
	}
	waiters.Wait()
	close(stop)
	wg.Wait()
	if ts.Listeners() != 0 || len(ts.by) != 0 {
		t.Fatalf("%d listeners, %d tenants left", ts.Listeners(), len(ts.by))
	}
}
