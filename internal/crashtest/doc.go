// Package crashtest holds transferd's crash tests (issue #4): it builds
// cmd/transferd and cmd/pbxsim, runs one simulator process that outlives
// every transferd process, kills transferd with SIGKILL at every step
// boundary of every flow (TRANSFERD_TEST_CRASH_AT), restarts it (or lets
// a replica take over on PostgreSQL), and then checks the simulator's own
// state: the caller is connected to the target, or back with the agent and
// not held; no consult leg is left behind; no second consult call was made.
// Every point runs on each of the sides (sides_test.go): the simulators'
// defaults, and two sets of the other answers to what the reference notes
// could only guess, one polled and one with the providers' callbacks (on
// PostgreSQL, each replica with a public URL of its own). The sides run in
// parallel, each with a pbxsim of its own.
//
// The package has no non-test code. Run it with
//
//	go test -count=1 ./internal/crashtest/
//
// and, for the multi-replica part, with TRANSFERD_TEST_DATABASE_URL set to
// a PostgreSQL server the test may create databases on (a fresh database
// per run, dropped at the end). That part covers a representative set of
// crash points per flow, or all of them with TRANSFERD_CRASH_ALL_POINTS=1
// (about 1.5 s each: a takeover waits for the dead owner's heartbeat to
// expire). A case whose owner is claimed from while still alive (its
// heartbeat lapsed on a loaded machine) before reaching the point is
// said so in the log and tried again, up to three times. Set
// TRANSFERD_CRASH_SUMMARY to a file name to get the summary lines there:
// go test prints a passing package's output only with -v.
//
// The storm (storm_test.go, TestStorm) runs only with TRANSFERD_STORM=1:
// hundreds of randomized transfers per seed against both simulators'
// adversarial profiles, with SIGKILL restarts, checked against the
// simulators' ground truth. docs/invariants.md describes it and how to
// replay a seed (TRANSFERD_STORM_SEEDS).
//
// Every transferd listens on a loopback port below the kernel's ephemeral
// ones (freeAddr). Processes of this package running at once, as .ci/run's
// storm lanes do, each take a slice of that range of their own:
// TRANSFERD_CRASHTEST_PORTS=i/n, the i-th of n parts, counted from 0.
package crashtest
