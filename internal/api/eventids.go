package api

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/transferd/transferd/internal/orchestrator"
)

// eventIDs makes the event stream's ids from outbox positions and reads
// them back. An id is one AES block, sealed with the store's secret
// (orchestrator.EventIDKey), holding the position and a tag of the
// tenant: unlike the positions themselves, which every tenant's events
// share, the ids tell nothing of the other tenants' events, and one
// tenant's ids mean nothing to another's stream. AES is a permutation of
// the block: each position has one id, and an id that was not made with
// the secret opens to a tag that matches no tenant but by chance (2^-64).
type eventIDs struct {
	block       cipher.Block
	legacyBelow int64
	tag         [8]byte // the first half of the block: the tenant, hashed
}

// newEventIDs makes and reads the ids of tenant's stream.
func newEventIDs(k orchestrator.EventIDKey, tenant string) eventIDs {
	b, err := aes.NewCipher(k.Secret[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	x := eventIDs{block: b, legacyBelow: k.LegacyBelow}
	sum := sha256.Sum256([]byte("transferd event id\x00" + tenant))
	copy(x.tag[:], sum[:8])
	return x
}

// idLen is the length of an id: 16 bytes in unpadded base64url.
var idLen = base64.RawURLEncoding.EncodedLen(aes.BlockSize)

// id is the id of the event at pos.
func (x eventIDs) id(pos int64) string {
	var b [aes.BlockSize]byte
	copy(b[:8], x.tag[:])
	binary.BigEndian.PutUint64(b[8:], uint64(pos))
	x.block.Encrypt(b[:], b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// pos is the position an id of the tenant's stream names. "0" is the start of
// the outbox. Any other plain number is an id an older version sent: the
// stream resumes after it, or after the key's LegacyBelow (the outbox's
// last position at the upgrade) if it names a later one, which an older
// replica still running, or events purged before the upgrade, can leave
// a client with; the client may then be sent events again, never miss
// one. Refusing such numbers would tell any tenant, by bisection, how many
// events all tenants had made; numbers up to LegacyBelow tell a tenant only
// the positions of its own events before the upgrade, which the older
// version showed it.
func (x eventIDs) pos(id string) (int64, bool) {
	id = strings.TrimSpace(id)
	if digits(id) {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n > x.legacyBelow { // err: too large
			n = x.legacyBelow
		}
		return n, true
	}
	if len(id) != idLen {
		return 0, false
	}
	// Strict: the last letter's unused bits must be zero, so that each
	// position has one id and any changed letter is refused.
	b, err := base64.RawURLEncoding.Strict().DecodeString(id)
	if err != nil || len(b) != aes.BlockSize {
		return 0, false
	}
	x.block.Decrypt(b, b)
	if [8]byte(b[:8]) != x.tag {
		return 0, false
	}
	n := int64(binary.BigEndian.Uint64(b[8:]))
	return n, n > 0
}

// digits reports whether s is a plain number: ASCII digits, no sign (as
// the contract's StreamEventID has it).
func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
