package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"
)

func TestHelpHasOneHeader(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "environment"); n != 1 {
		t.Errorf("-h mentions the environment %d times, want one header:\n%.600s", n, out.String())
	}
}

func TestDatabaseURLForms(t *testing.T) {
	for dsn, ok := range map[string]bool{
		"postgres://transferd:pw@db:5432/transferd?sslmode=require":                     true,
		"postgresql://db/transferd":                                                     true,
		"host=db port=5432 dbname=transferd user=transferd password=pw sslmode=require": true,
		"mysql://db/transferd":                                                          false,
		"db:5432":                                                                       false,
	} {
		t.Setenv("TRANSFERD_DATABASE_URL", dsn)
		var cfg config
		if err := envconfig.Process("TRANSFERD", &cfg); err != nil {
			t.Fatal(err)
		}
		err := cfg.validate()
		if (err == nil) != ok {
			t.Errorf("%q: validate = %v, want accepted %v", dsn, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: the error shows the password: %v", dsn, err)
		}
	}
}

func TestDemoConfigLogNamesNoRealProvider(t *testing.T) {
	var cfg config
	if err := envconfig.Process("TRANSFERD", &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.demo() {
		t.Skip("a provider is configured in this environment")
	}
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("config", cfg).Msg("starting")
	if strings.Contains(buf.String(), "catapult.inetwork.com") {
		t.Errorf("the demo configuration log names the real Catapult URL: %s", buf.String())
	}
}
