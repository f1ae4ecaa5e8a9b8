package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Import writes transfers as they are, each with the events of its
// Outbox, in one transaction through COPY: a history copied from another
// store, or the store benchmark's generated one (a million through
// Create takes many minutes). The rows are those Create and Update would
// have left: the same columns, keys and JSON, every event with the record as
// imported. Nothing is written if any transfer cannot be (an id that
// exists, a second active transfer of one call). The events lock is held
// for the whole transaction, as a save's batch holds it, so that event
// positions become visible in order, and the import notifies every
// replica's listener of the tenants whose events it wrote, as a batch
// does. Import is not for live transfers:
// it links no idempotency reservation; callers keep batches to a few
// thousand transfers.
func (s *Store) Import(ctx context.Context, ts []*orchestrator.Transfer) error {
	const op = "import"
	rows, keys := make([][]any, 0, len(ts)), make([][]any, 0, len(ts))
	var events [][]any
	var tenants []string
	for _, t := range ts {
		if t.Version < 1 {
			return fmt.Errorf("postgres: %s %s: version %d: a stored transfer has version 1 or more", op, t.ID, t.Version)
		}
		c, err := encode(t)
		if err != nil {
			return fmt.Errorf("postgres: %s %s: %w", op, t.ID, err)
		}
		rows = append(rows, []any{t.ID, t.Version, c.state, c.provider, c.callKey, t.Owner, t.Open(), t.UpdatedAt, c.record,
			c.tenant})
		keys = append(keys, []any{t.ID, c.tenant, c.provider, c.externalID, c.domain, c.user, c.callID, c.target, t.CreatedAt})
		for _, ev := range t.Outbox {
			if !slices.Contains(tenants, ev.Tenant) {
				tenants = append(tenants, ev.Tenant)
			}
			events = append(events, []any{ev.ID, ev.Tenant, ev.TransferID, ev.Seq, string(ev.Type), ev.At, string(ev.From),
				string(ev.To), c.record})
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.fail(op, err)
	}
	defer tx.Rollback(ctx)
	// The events lock first, as a save's batch takes it (commit.go): a
	// live create of an imported call waits instead of deadlocking. With
	// it, as a batch of saves does, the notification of the events to
	// every replica's listener, sent if the import commits (notify.go):
	// an event stream open on another replica reads them at once, not at
	// its next poll.
	if payload := s.payloadOf(tenants); payload != "" && !s.notifyOff {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1), pg_notify($2, $3)`, eventsLock, s.channel, payload); err != nil {
			return s.fail(op, err)
		}
	} else if len(events) > 0 {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, eventsLock); err != nil {
			return s.fail(op, err)
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"transfers"}, []string{"id", "version", "state", "provider", "call_key", "owner",
		"open", "updated_at", "record", "tenant"}, pgx.CopyFromRows(rows)); err != nil {
		return s.fail(op, err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"transfer_keys"}, []string{"id", "tenant", "provider", "external_id",
		"call_domain", "call_user", "call_id", "target", "created_at"}, pgx.CopyFromRows(keys)); err != nil {
		return s.fail(op, err)
	}
	if len(events) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"id", "tenant", "transfer_id", "seq", "type", "at",
			"from_state", "to_state", "snapshot"}, pgx.CopyFromRows(events)); err != nil {
			return s.fail(op, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return s.fail(op, err)
	}
	return nil
}
