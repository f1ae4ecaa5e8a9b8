package main

import (
	"strings"
	"testing"
)

// TestAWriteTimeoutTooShortToAnswerIsRefused: TRANSFERD_WRITE_TIMEOUT
// bounds the writing of an answer from the end of the request's headers,
// so a value below what serving takes cut every answer after the request
// was carried out: with 1ms a create was saved and driven (the access log
// said 202) and its client got an empty reply, not knowing whether the
// transfer was made; lists and reads got none either. It is at least 1s.
func TestAWriteTimeoutTooShortToAnswerIsRefused(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"1ms", false}, {"999ms", false}, {"1s", true}, {"30s", true}, {"2m", true}, {"3m", false},
	} {
		t.Run(tc.value, func(t *testing.T) {
			t.Setenv("TRANSFERD_WRITE_TIMEOUT", tc.value)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.validate()
			if refused := err != nil && strings.Contains(err.Error(), "TRANSFERD_WRITE_TIMEOUT"); refused == tc.ok {
				t.Errorf("TRANSFERD_WRITE_TIMEOUT=%s: validate = %v, want refused %v", tc.value, err, !tc.ok)
			}
		})
	}
}
