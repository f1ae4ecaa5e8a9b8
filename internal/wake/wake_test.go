package wake

import (
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
