package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// rowWrites is PostgreSQL's count of the rows inserted into and updated
// in webhook_deliveries (pg_stat_user_tables), in the schema transferd
// uses with the same URL: how often a run wrote each delivery's row,
// which is most of what a delivery costs the database.
type rowWrites struct{ inserted, updated int64 }

// readRowWrites reads the counts once every other client of the database
// has gone. A backend reports its counts when it goes idle, at most once
// a second, and when it exits, before it leaves pg_stat_activity: a
// reading taken after transferd's connections closed has all of theirs.
// ctx bounds the wait.
func readRowWrites(ctx context.Context, url string) (rowWrites, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return rowWrites{}, fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var others int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&others); err != nil {
			return rowWrites{}, fmt.Errorf("postgres: other clients: %w", err)
		}
		if others == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return rowWrites{}, fmt.Errorf("postgres: %d other clients still connected: %w", others, ctx.Err())
		case <-tick.C:
		}
	}
	var w rowWrites
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0) FROM pg_stat_user_tables
		WHERE schemaname = current_schema() AND relname = 'webhook_deliveries'`).Scan(&w.inserted, &w.updated); err != nil {
		return rowWrites{}, fmt.Errorf("postgres: row counts: %w", err)
	}
	return w, nil
}

// since is the writes made after w0.
func (w rowWrites) since(w0 rowWrites) rowWrites {
	return rowWrites{inserted: w.inserted - w0.inserted, updated: w.updated - w0.updated}
}

// String is the updates per delivery inserted.
func (w rowWrites) String() string {
	if w.inserted == 0 {
		return "no delivery inserted"
	}
	return fmt.Sprintf("%.3f row updates per delivery inserted (%d inserted, %d updates)", float64(w.updated)/float64(w.inserted), w.inserted, w.updated)
}
