package netsapiens_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/providers/netsapiens"
)

// wakingBuffer is a log sink that says when it was written to, so that a
// test waits for a line without polling.
type wakingBuffer struct {
	syncBuffer
	wrote chan struct{} // a token after each write
}

func (b *wakingBuffer) Write(p []byte) (int, error) {
	n, err := b.syncBuffer.Write(p)
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return n, err
}

// A PBX refusing a subscription may quote the post-url it was sent, and
// that URL carries the token of transferd's callback route for the
// domain: the refusal's message went into the warning logged at every
// try. The token is cut, as the access log cuts it, and as the Bandwidth
// adapter cuts a quoted callbackUrl's.
func TestAPBXQuotingThePostURLDoesNotLogItsToken(t *testing.T) {
	const secret = "default.c2VjcmV0LXRva2VuLW9mLXRoZS1kb21haW4"
	pbx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/subscriptions") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"code":400,"message":"post-url 'https://transferd.example%sacme.example/%s' is not reachable"}`,
				netsapiens.SubscriptionPath, secret)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer pbx.Close()
	logged := &wakingBuffer{wrote: make(chan struct{}, 1)}
	c, err := netsapiens.New(netsapiens.Config{BaseURL: pbx.URL + basePath, APIKey: apiKey, RetryBase: time.Millisecond,
		Log: zerolog.New(logged),
		EventURL: func(d string) string {
			return "https://transferd.example" + netsapiens.SubscriptionPath + d + "/" + secret
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer c.Close(ctx)
	c.WatchStarted("acme.example")
	for !strings.Contains(logged.String(), "cannot subscribe") {
		select {
		case <-logged.wrote:
		case <-ctx.Done():
			t.Fatalf("no warning logged for the refusal: %s", logged.String())
		}
	}
	out := logged.String()
	if strings.Contains(out, "c2VjcmV0") {
		t.Fatalf("the post-url's token was logged: %s", out)
	}
	if !strings.Contains(out, netsapiens.SubscriptionPath+"acme.example/redacted") {
		t.Fatalf("the refusal's text is not kept with its token cut: %s", out)
	}
}
