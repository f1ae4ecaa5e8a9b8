package main

import (
	"context"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestUnparsableSettingsSayWhatIsWanted: a value that is not of its
// setting's type was reported in envconfig's words, with the Go field
// behind the variable ("assigning TRANSFERD_CONSULT_TIMEOUT to
// ConsultTimeout: converting '30' to type time.Duration. details: time:
// missing unit in duration"). The message names the variable, the value
// and what is wanted, and nothing of the code.
func TestUnparsableSettingsSayWhatIsWanted(t *testing.T) {
	for _, c := range []struct{ name, value, want string }{
		{"TRANSFERD_CONSULT_TIMEOUT", "30", `TRANSFERD_CONSULT_TIMEOUT: "30" is not a duration: write a number and a unit, such as 30s, 500ms or 2m`},
		{"TRANSFERD_NETSAPIENS_AUTO_ANSWER", "yes", `TRANSFERD_NETSAPIENS_AUTO_ANSWER: "yes" is not true or false`},
		{"TRANSFERD_TENANT_START_BURST", "1.5", `TRANSFERD_TENANT_START_BURST: "1.5" is not a whole number`},
		{"TRANSFERD_TENANT_START_RATE", "fast", `TRANSFERD_TENANT_START_RATE: "fast" is not a number`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.name, c.value)
			err := run(context.Background(), nil, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to say %s", err, c.want)
			}
			for _, code := range []string{"envconfig", "assigning", "time.Duration", "strconv", "StartBurst", "ConsultTimeout"} {
				if strings.Contains(err.Error(), code) {
					t.Errorf("err = %v: speaks of the code (%s)", err, code)
				}
			}
		})
	}
}

// TestBusyPortsNameTheirSetting: the README's first command starts
// transferd on :8080 and the simulator on 127.0.0.1:8081; where either
// port is taken (another service, a second transferd), the start failed
// with "listen on :8080 (api): … address already in use", which does not
// say which variable moves it.
func TestBusyPortsNameTheirSetting(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, name := range []string{"TRANSFERD_LISTEN_ADDR", "TRANSFERD_DEMO_ADDR"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
			t.Setenv("TRANSFERD_DEMO_ADDR", "127.0.0.1:0")
			t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
			t.Setenv(name, busy.Addr().String())
			err := run(context.Background(), nil, io.Discard, io.Discard)
			if err == nil || !strings.HasPrefix(err.Error(), name+": ") || !strings.Contains(err.Error(), busy.Addr().String()) {
				t.Fatalf("err = %v, want it to begin with %s and name the address", err, name)
			}
		})
	}
}

// TestDurationLogFieldsNameTheirUnit holds the code to the README's word on
// logs: durations carry their unit in the field name (took_ms). zerolog's
// Dur writes a number of milliseconds, and lines such as "shutting down"
// ("timeout": 30000), "draining" ("delay"), the retention purges
// ("retention": 604800000) and the retries ("retry_in") did not say so.
func TestDurationLogFieldsNameTheirUnit(t *testing.T) {
	dur := regexp.MustCompile(`\.Dur\("([^"]*)"`)
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range dur.FindAllStringSubmatch(string(src), -1) {
			if !strings.HasSuffix(m[1], "_ms") {
				t.Errorf("%s logs the duration %q, a number of milliseconds that does not say so: name it %s_ms", path, m[1], m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
