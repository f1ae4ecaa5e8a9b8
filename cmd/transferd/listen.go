package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	stdlog "log"
	"net/http"
	"os"
	"sync"

	"github.com/rs/zerolog"
)

// certReloader serves the certificate in the files, reading them again
// when they change (a renewed certificate is served without a restart). A
// change that does not load keeps the certificate in force.
type certReloader struct {
	certFile, keyFile string
	log               zerolog.Logger
	mu                sync.Mutex
	stamp             string
	cert              *tls.Certificate
}

func newCertReloader(certFile, keyFile string, log zerolog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(fileStamp(certFile, keyFile)); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load(stamp string) error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// The parse error names no key material.
		return fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamp = &c, stamp
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := fileStamp(r.certFile, r.keyFile)
	r.mu.Lock()
	defer r.mu.Unlock()
	if st != r.stamp {
		if err := r.load(st); err != nil {
			r.stamp = st // tried: not again until the files change
			r.log.Error().Str("error", err.Error()).Msg("TLS certificate reload failed; the certificate in force stays")
		} else {
			r.log.Info().Str("cert_file", r.certFile).Msg("TLS certificate reloaded")
		}
	}
	return r.cert, nil
}

func fileStamp(files ...string) string {
	s := ""
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d:%d;", st.ModTime().UnixNano(), st.Size())
		}
	}
	return s
}

// tlsConfigs returns the TLS configuration of the API listener (with
// client certificates when a client CA is set) and of the others, or nils
// without TLS.
func tlsConfigs(cfg *config, log zerolog.Logger) (apiTLS, otherTLS *tls.Config, err error) {
	if cfg.TLSCertFile == "" {
		return nil, nil, nil
	}
	r, err := newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log)
	if err != nil {
		return nil, nil, fmt.Errorf("TRANSFERD_TLS_CERT_FILE, TRANSFERD_TLS_KEY_FILE: %w", err)
	}
	otherTLS = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.getCertificate}
	apiTLS = otherTLS.Clone()
	if cfg.TLSClientCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("TRANSFERD_TLS_CLIENT_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, errors.New("TRANSFERD_TLS_CLIENT_CA_FILE: no PEM certificate in the file")
		}
		apiTLS.ClientCAs, apiTLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return apiTLS, otherTLS, nil
}

// newHTTPServer applies the hardening every listener shares: read, write
// and idle timeouts (long polls extend their own write deadline), a
// header size limit.
func newHTTPServer(cfg *config, h http.Handler, tlsCfg *tls.Config, log zerolog.Logger, name string) *http.Server {
	if tlsCfg != nil {
		// Each server adds its protocols to its own copy.
		tlsCfg = tlsCfg.Clone()
	}
	return &http.Server{Handler: h, TLSConfig: tlsCfg,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes,
		ErrorLog: stdlog.New(log.With().Str("component", "http").Str("listener", name).Logger(), "", 0)}
}
