package orchestrator

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns "tr_" followed by 26 Crockford base32 characters: 48 bits
// of milliseconds then 80 random bits, so that ids sort by creation time
// and the list cursor can be an id.
func NewID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails on supported platforms
	var out [29]byte
	copy(out[:], "tr_")
	// 128 bits as 26 characters of 5 bits, the first carrying 3 bits.
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	for i := 28; i >= 3; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// ValidID reports whether s has the shape NewID produces; anything else
// cannot name a transfer and is rejected before a store lookup.
func ValidID(s string) bool {
	if len(s) != 29 || s[:3] != "tr_" {
		return false
	}
	for i := 3; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') || c == 'I' || c == 'L' || c == 'O' || c == 'U' {
			return false
		}
	}
	return s[3] <= '7'
}
