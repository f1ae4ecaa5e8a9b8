package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// benchWebhookSecret signs the deliveries of -webhooks (32 bytes of
// "0123456789abcdef0123456789abcdef"); the receiver does not verify them.
const benchWebhookSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// webhookReceiver is the endpoint of -webhooks ok and tls: it answers every
// delivery 204 at once and counts them, and the connections transferd
// opened to send them.
type webhookReceiver struct {
	srv             *http.Server
	url, certFile   string
	received, conns atomic.Int64
}

// String reports what the receiver counted.
func (r *webhookReceiver) String() string {
	n, c := r.received.Load(), r.conns.Load()
	return fmt.Sprintf("webhook deliveries received: %d over %d new connections (%.3f per delivery)", n, c, float64(c)/float64(max(n, 1)))
}

// webhookEnv starts what -webhooks asks for and returns the environment
// that makes transferd deliver every event of the default tenant to it:
// "ok", a receiver in this process; "tls", the same over HTTPS, its
// certificate made for the run and given to transferd as its only trusted
// root (SSL_CERT_FILE), so that what a TLS handshake costs is measured;
// "down", an address that refuses connections (every attempt fails at
// once and is retried after its back-off). The receiver is nil for
// "down".
func webhookEnv(mode string) ([]string, *webhookReceiver, error) {
	switch mode {
	case "ok", "tls":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		r := &webhookReceiver{url: "http://" + ln.Addr().String() + "/hooks"}
		var env []string
		if mode == "tls" {
			cert, pemFile, err := selfSigned()
			if err != nil {
				ln.Close()
				return nil, nil, err
			}
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
			r.url, r.certFile = "https"+strings.TrimPrefix(r.url, "http"), pemFile
			env = append(env, "SSL_CERT_FILE="+pemFile)
		}
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
		return append(env, "TRANSFERD_WEBHOOK_URL="+r.url, "TRANSFERD_WEBHOOK_SECRET="+benchWebhookSecret), r, nil
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
	return nil, nil, fmt.Errorf("-webhooks: %q is neither ok, tls nor down", mode)
}

// quietFor is how long the receiver must get nothing for quiet to take
// a point's deliveries as done.
const quietFor = time.Second

// quiet returns once the receiver has had no delivery for quietFor (at
// most ten minutes after it was called, or when ctx ends).
func (r *webhookReceiver) quiet(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.Now().Add(10 * time.Minute)
	last, since := r.received.Load(), time.Now()
	for time.Since(since) < quietFor && time.Now().Before(giveUp) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n := r.received.Load(); n != last {
			last, since = n, time.Now()
		}
	}
}

// Close stops the receiver and removes its certificate's file.
func (r *webhookReceiver) Close() {
	r.srv.Close()
	if r.certFile != "" {
		os.Remove(r.certFile)
	}
}

// selfSigned makes a certificate for 127.0.0.1, valid for a day, and
// writes it, PEM-encoded, to a temporary file.
func selfSigned() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "transferbench webhooks"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	f, err := os.CreateTemp("", "transferbench-webhooks-*.pem")
	if err != nil {
		return tls.Certificate{}, "", err
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
		os.Remove(f.Name())
		return tls.Certificate{}, "", err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, f.Name(), nil
}
