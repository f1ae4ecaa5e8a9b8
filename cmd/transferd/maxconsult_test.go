package main

import (
	"strings"
	"testing"
)

// TRANSFERD_MAX_CONSULT_TIMEOUT near a time.Duration's largest value was
// taken, and a consult asking for it had its wake, a millisecond past its
// deadline, come out negative. A day is the ceiling.
func TestAMaxConsultTimeoutPastADayIsRefused(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"10m", true}, {"2h", true}, {"24h", true}, {"24h0m1s", false}, {"2562047h47m16s", false},
	} {
		t.Run(tc.value, func(t *testing.T) {
			t.Setenv("TRANSFERD_MAX_CONSULT_TIMEOUT", tc.value)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.validate()
			if refused := err != nil && strings.Contains(err.Error(), "TRANSFERD_MAX_CONSULT_TIMEOUT: must be at most"); refused == tc.ok {
				t.Errorf("TRANSFERD_MAX_CONSULT_TIMEOUT=%s: validate = %v, want refused %v", tc.value, err, !tc.ok)
			}
		})
	}
}
