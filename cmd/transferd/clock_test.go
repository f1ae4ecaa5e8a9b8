package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A replica on PostgreSQL tells time by the database server's clock,
// whatever its host's says: here its clock is an hour behind, and the
// transfer it creates, and its heartbeat, carry the server's time. Its
// peers on other hosts judge both by that same clock; before, a replica
// whose clock lagged the lease had its live transfers taken over (the
// storm with TRANSFERD_STORM_CLOCK_SKEW: 38 violations in seed 1).
func TestAReplicaOnPostgreSQLTellsTheServersTime(t *testing.T) {
	u := testDatabase(t)
	t.Setenv("TRANSFERD_DATABASE_URL", u.String())
	t.Setenv("TRANSFERD_TEST_CLOCK_SKEW", "-1h")
	t.Setenv("TRANSFERD_INSTANCE_ID", "behind")
	api, _, logs, _ := startService(t)
	if m := logs.wait(t, msg("the database server's clock and this host's differ by more than a second: "+
		"heartbeats are judged on the server's clock, so replicas stay safe, but check this host's time synchronisation (NTP)")); m["level"] != "warn" {
		t.Errorf("the clock warning: %v", m)
	}

	resp, tr := send(t, http.MethodPost, api+"/v1/transfers",
		`{"provider":"netsapiens","call":{"domain":"demo","user":"1000"},"target":"1010","completion":"manual"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %v", resp.StatusCode, tr)
	}
	created, err := time.Parse(time.RFC3339Nano, tr["created_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(created); d < -time.Minute || d > time.Minute {
		t.Errorf("the transfer was created %v ago by the server's clock; want now (the host's clock is an hour behind)", d.Round(time.Second))
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left time.Duration
	if err := conn.QueryRow(ctx, `SELECT expires - clock_timestamp() FROM replicas WHERE name = 'behind'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left <= 0 || left > time.Minute {
		t.Errorf("the replica's heartbeat runs out in %v by the server's clock; want within its TTL", left)
	}
}
