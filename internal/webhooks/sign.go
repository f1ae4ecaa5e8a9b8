package webhooks

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// signer signs with every secret of an endpoint.
type signer []*standardwebhooks.Webhook

// newSigner parses whsec_ secrets (base64 after the prefix). An error
// never contains a secret.
func newSigner(secrets []string) (signer, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("webhooks: an endpoint needs at least one secret")
	}
	s := make(signer, 0, len(secrets))
	for i, sec := range secrets {
		if err := ValidSecret(sec); err != nil {
			return nil, fmt.Errorf("webhooks: secret %d: %w", i+1, err)
		}
		wh, err := standardwebhooks.NewWebhook(sec)
		if err != nil {
			return nil, fmt.Errorf("webhooks: secret %d is not base64 after whsec_", i+1)
		}
		s = append(s, wh)
	}
	return s, nil
}

// ValidSecret checks that sec is a whsec_ secret of 24 to 64 bytes (the
// Standard Webhooks recommendation); the error never contains it.
func ValidSecret(sec string) error {
	raw, ok := strings.CutPrefix(sec, "whsec_")
	if !ok {
		return fmt.Errorf("a secret must start with whsec_")
	}
	// The library decodes with padded standard base64, as here; the
	// length is the decoded key's, not estimated from the text's.
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return fmt.Errorf("a secret must be base64 after whsec_")
	}
	if n := len(key); n < 24 || n > 64 {
		return fmt.Errorf("a secret must hold 24 to 64 bytes")
	}
	return nil
}

// headers sets the Standard Webhooks headers of one attempt: the same id
// on every attempt, the attempt's time, and one signature per secret.
func (s signer) headers(h http.Header, id string, at time.Time, body []byte) error {
	sigs := make([]string, 0, len(s))
	for _, wh := range s {
		sig, err := wh.Sign(id, at, body)
		if err != nil {
			return fmt.Errorf("webhooks: sign: %w", err)
		}
		sigs = append(sigs, sig)
	}
	h.Set(standardwebhooks.HeaderWebhookID, id)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(standardwebhooks.HeaderWebhookSignature, strings.Join(sigs, " "))
	return nil
}
