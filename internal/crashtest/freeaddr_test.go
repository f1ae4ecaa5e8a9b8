package crashtest

import (
	"net"
	"os"
	"strconv"
	"testing"
)

// TestFreeAddrIsOutsideTheEphemeralPorts: every address freeAddr hands
// out is new, bindable, and below the ports the kernel gives listeners on
// port 0 and outgoing connections, so that nothing else running takes it
// between freeAddr and the bind of the transferd it is for.
func TestFreeAddrIsOutsideTheEphemeralPorts(t *testing.T) {
	lo, hi, err := portSlice(os.Getenv("TRANSFERD_CRASHTEST_PORTS"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 200 {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(port); n < lo || n >= hi {
			t.Fatalf("%s: port outside [%d, %d)", addr, lo, hi)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s cannot be bound: %v", addr, err)
		}
		ln.Close()
	}
	// An outgoing connection's local end: an ephemeral port, never one
	// freeAddr would hand out.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.LocalAddr().(*net.TCPAddr).Port; p >= lo && p < hi {
		t.Fatalf("an outgoing connection's local port %d is in freeAddr's range [%d, %d)", p, lo, hi)
	}
}

// TestPortSlicesAreDisjoint: lanes given i/n for each i take their ports
// from parts of the range that do not overlap and together stay inside it;
// a malformed slice is refused, not read as the whole range.
func TestPortSlicesAreDisjoint(t *testing.T) {
	lo, hi := belowEphemeral()
	if l, h, err := portSlice(""); err != nil || l != lo || h != hi {
		t.Fatalf(`portSlice("") = %d, %d, %v; want %d, %d`, l, h, err, lo, hi)
	}
	const n = 3
	prev := lo
	for i := range n {
		l, h, err := portSlice(strconv.Itoa(i) + "/" + strconv.Itoa(n))
		if err != nil {
			t.Fatal(err)
		}
		if l < prev || h <= l || h > hi {
			t.Fatalf("slice %d/%d = [%d, %d): overlaps the one before (ending %d) or leaves [%d, %d)", i, n, l, h, prev, lo, hi)
		}
		prev = h
	}
	for _, bad := range []string{"3/3", "-1/3", "1/0", "1", "a/b", "1/3x"} {
		if _, _, err := portSlice(bad); err == nil {
			t.Errorf("portSlice(%q) accepted", bad)
		}
	}
}
