package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// benchWebhookSecret signs the deliveries of -webhooks (32 bytes of
// "0123456789abcdef0123456789abcdef"); the receiver does not verify them.
const benchWebhookSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// webhookReceiver is the endpoint of -webhooks ok: it answers every
// delivery 204 at once and counts them, and the connections transferd
// opened to send them.
type webhookReceiver struct {
	srv             *http.Server
	url             string
	received, conns atomic.Int64
}

// String reports what the receiver counted.
func (r *webhookReceiver) String() string {
	n, c := r.received.Load(), r.conns.Load()
	return fmt.Sprintf("webhook deliveries received: %d over %d new connections (%.3f per delivery)", n, c, float64(c)/float64(max(n, 1)))
}

// webhookEnv starts what -webhooks asks for and returns the environment
// that makes transferd deliver every event of the default tenant to it:
// "ok", a receiver in this process; "down", an address that refuses
// connections (every attempt fails at once and is retried after its
// back-off). The receiver is nil for "down".
func webhookEnv(mode string) ([]string, *webhookReceiver, error) {
	switch mode {
	case "ok":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		r := &webhookReceiver{url: "http://" + ln.Addr().String() + "/hooks"}
		r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
			r.received.Add(1)
			w.WriteHeader(http.StatusNoContent)
		}), ConnState: func(_ net.Conn, cs http.ConnState) {
			if cs == http.StateNew {
				r.conns.Add(1)
			}
		}}
		go func() { _ = r.srv.Serve(ln) }()
		return []string{"TRANSFERD_WEBHOOK_URL=" + r.url, "TRANSFERD_WEBHOOK_SECRET=" + benchWebhookSecret}, r, nil
	case "down":
		// A port nothing listens on: bound, then closed.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		addr := ln.Addr().String()
		ln.Close()
		return []string{"TRANSFERD_WEBHOOK_URL=http://" + addr + "/hooks", "TRANSFERD_WEBHOOK_SECRET=" + benchWebhookSecret}, nil, nil
	}
	return nil, nil, fmt.Errorf("-webhooks: %q is neither ok nor down", mode)
}
