package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/storetest"
)

// testDatabase returns TRANSFERD_TEST_DATABASE_URL with a schema of its
// own (search_path), dropped when the test ends, or skips the test.
func testDatabase(t testing.TB) *url.URL {
	t.Helper()
	return storetest.PostgresSchema(t, "storeopen")
}

// flakyProxy forwards TCP connections to target, but ends the first
// `refuse` of them at once, as a server that is not taking connections
// yet does to a client (an end of file before any answer).
type flakyProxy struct {
	ln       net.Listener
	target   string
	refuse   int32
	accepted atomic.Int32
	wg       sync.WaitGroup
}

func newFlakyProxy(t *testing.T, target string, refuse int32) *flakyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{ln: ln, target: target, refuse: refuse}
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	p.wg.Go(p.serve)
	return p
}

func (p *flakyProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.accepted.Add(1) <= p.refuse {
			c.Close()
			continue
		}
		p.wg.Go(func() {
			defer c.Close()
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			defer up.Close()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			_, _ = io.Copy(c, up)
		})
	}
}

// A PostgreSQL that does not take connections yet (starting, recovering
// from a crash, failing over) delays the start; it does not end it. The
// storm that crashes the server found a replica restarted during a
// recovery exit at once ("the database system is not yet accepting
// connections"), leaving its transfers to a supervisor's back-off.
func TestStartWaitsForPostgreSQL(t *testing.T) {
	u := testDatabase(t)
	proxy := newFlakyProxy(t, u.Host, 3)
	u.Host = proxy.ln.Addr().String()
	defer func(w time.Duration) { storeOpenWait = w }(storeOpenWait)
	storeOpenWait = time.Millisecond
	var logs bytes.Buffer
	s, closeStore, err := openStore(context.Background(), &config{DatabaseURL: secret(u.String())}, time.Now, zerolog.New(&logs))
	if err != nil {
		t.Fatalf("openStore through a server that ends its first 3 connections: %v\n%s", err, logs.String())
	}
	defer closeStore()
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A try may make more than one connection (pgx's fallbacks): at
	// least one try failed, and the proxy ended all three.
	if n := strings.Count(logs.String(), "PostgreSQL cannot be reached yet; trying again"); n == 0 || proxy.accepted.Load() <= 3 {
		t.Errorf("%d tries logged as failed, %d connections made, want some and more than 3:\n%s", n, proxy.accepted.Load(), logs.String())
	}
}

// A refusal that waiting cannot cure fails the start at once: here, a
// database that does not exist.
func TestStartFailsAtOnceOnARefusal(t *testing.T) {
	u := testDatabase(t)
	u.Path = "/transferd_no_such_database"
	defer func(w time.Duration) { storeOpenWait = w }(storeOpenWait)
	storeOpenWait = time.Hour // a retry would make the test time out
	var logs bytes.Buffer
	_, _, err := openStore(context.Background(), &config{DatabaseURL: secret(u.String())}, time.Now, zerolog.New(&logs))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("openStore with a database that does not exist: %v, want its refusal", err)
	}
	if strings.Contains(logs.String(), "trying again") {
		t.Errorf("a refusal was tried again:\n%s", logs.String())
	}
}

// Nothing answers at all (a refused connection), for longer than the
// patience: the start fails with the last error, after trying again.
func TestStartGivesUpOnPostgreSQLAfterItsPatience(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	defer func(w, p time.Duration) { storeOpenWait, storeOpenPatience = w, p }(storeOpenWait, storeOpenPatience)
	storeOpenWait, storeOpenPatience = time.Millisecond, 50*time.Millisecond
	var logs bytes.Buffer
	_, _, err = openStore(context.Background(), &config{DatabaseURL: secret("postgres://transferd@" + addr + "/transferd?sslmode=disable&connect_timeout=5")},
		time.Now, zerolog.New(&logs))
	if err == nil {
		t.Fatal("openStore with nothing listening succeeded")
	}
	if !strings.Contains(logs.String(), "trying again") {
		t.Errorf("a refused connection was not tried again:\n%s", logs.String())
	}
}

// A replica whose clock is off from the database server's by more than a
// second says so at start (heartbeats are judged on the server's clock,
// so it stays safe, but its host's time synchronisation is broken); one
// whose clock agrees does not.
func TestStartWarnsOfAClockOffFromTheServers(t *testing.T) {
	u := testDatabase(t)
	for _, skew := range []time.Duration{0, 30 * time.Second, -30 * time.Second} {
		clock, err := testClock(map[bool]string{true: "", false: skew.String()}[skew == 0], zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		_, closeStore, err := openStore(context.Background(), &config{DatabaseURL: secret(u.String())}, clock, zerolog.New(&logs))
		if err != nil {
			t.Fatalf("openStore: %v", err)
		}
		closeStore()
		warned := strings.Contains(logs.String(), "the database server's clock and this host's differ")
		if warned != (skew != 0) {
			t.Errorf("clock %v off: warned %v, want %v:\n%s", skew, warned, skew != 0, logs.String())
		}
	}
}

// TRANSFERD_TEST_CLOCK_SKEW moves the process's wall clock, keeping its
// monotonic reading; a value that is no duration ends the start.
func TestTestClockSkew(t *testing.T) {
	clock, err := testClock("-90s", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	got := clock()
	after := time.Now()
	if got.Before(before.Add(-90*time.Second)) || got.After(after.Add(-90*time.Second)) {
		t.Errorf("the skewed clock read %v between %v and %v, want 90 s behind", got, before, after)
	}
	if !strings.Contains(got.String(), " m=") {
		t.Errorf("the skewed clock read %v, without a monotonic reading: the engine's durations would follow the wall clock's steps", got)
	}
	if _, err := testClock("soon", zerolog.Nop()); err == nil {
		t.Error("TRANSFERD_TEST_CLOCK_SKEW=soon accepted")
	}
}
