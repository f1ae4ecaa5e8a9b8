package crashtest

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bin holds what TestMain built and started, shared by every test.
var bin struct {
	transferd string // path of the transferd binary
	pbxsim    string // path of the pbxsim binary
	simBase   string // http://127.0.0.1:port of the shared pbxsim process
	simDied   <-chan struct{}
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// The tests skip themselves; nothing to build.
		os.Exit(m.Run())
	}
	os.Exit(setUpAndRun(m))
}

// setUpAndRun builds both commands, starts the simulator, runs the tests
// and tears everything down; it returns the exit code.
func setUpAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "transferd-crashtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "crashtest: building the commands:", err)
		return 1
	}
	bin.pbxsim = filepath.Join(dir, "pbxsim")
	base, died, stop, err := startSimulator(bin.pbxsim)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashtest: starting pbxsim:", err)
		return 1
	}
	defer stop()
	bin.simBase, bin.simDied = base, died
	bin.transferd = filepath.Join(dir, "transferd")
	return m.Run()
}

// build compiles cmd/transferd and cmd/pbxsim of this module into dir.
func build(dir string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goCmd = filepath.Join(root, "bin", "go")
		} else {
			return err
		}
	}
	out, err := exec.Command(goCmd, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("not inside a module (go env GOMOD = %q)", gomod)
	}
	cmd := exec.Command(goCmd, "build", "-o", dir+string(os.PathSeparator), "./cmd/transferd", "./cmd/pbxsim")
	cmd.Dir = filepath.Dir(gomod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// startSimulator starts one pbxsim with no action or answer delay on a
// free loopback port and returns its base URL, a channel closed when it
// exits, and a function that stops it. The shared one lives as long as
// the test binary: transferd processes die around it.
func startSimulator(path string) (string, <-chan struct{}, func(), error) {
	cmd := exec.Command(path, "-addr", "127.0.0.1:0", "-action-delay", "0", "-answer-delay", "0")
	cmd.SysProcAttr = childAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	died := make(chan struct{})
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		first <- line
		_, _ = io.Copy(io.Discard, r)
	}()
	go func() {
		_ = cmd.Wait()
		close(died)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-died
	}
	select {
	case line := <-first:
		// "pbxsim listening on http://127.0.0.1:PORT"
		base, ok := strings.CutPrefix(strings.TrimSpace(line), "pbxsim listening on ")
		if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
			stop()
			return "", nil, nil, fmt.Errorf("unexpected first line %q; stderr: %s", line, stderr.String())
		}
		return base, died, stop, nil
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, nil, fmt.Errorf("pbxsim printed no address within 30s; stderr: %s", stderr.String())
	}
}

// needBinaries skips in -short mode, where TestMain builds nothing.
func needBinaries(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("crash tests build and run processes; skipped with -short")
	}
	select {
	case <-bin.simDied:
		t.Fatal("the pbxsim process died")
	default:
	}
}
