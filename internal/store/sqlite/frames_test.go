package sqlite_test

import (
	"context"
	"encoding/binary"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/store/storetest"
)

// The write-ahead log's layout (sqlite.org/fileformat2.html, "WAL File
// Format"): a 32-byte header, then frames of a 24-byte header, whose first
// field is the page number, and the page.
const (
	walHeader      = 32
	walFrameHeader = 24
)

// walPages returns the pages of the frames appended to the WAL after its
// first `from` bytes, in order, and the WAL's length now. It fails the test
// if the WAL was started over meanwhile (after a checkpoint, the next
// commit writes from its start again, with new salts).
func walPages(t *testing.T, dir string, from int64, salts *[8]byte) ([]uint32, int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, sqlite.FileName+"-wal"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < walHeader {
		return nil, 0 // empty: the next commit writes the header
	}
	if from > 0 && [8]byte(b[16:24]) != *salts {
		t.Fatal("the WAL was started over during the test: a checkpoint ran")
	}
	*salts = [8]byte(b[16:24])
	pageSize := int64(binary.BigEndian.Uint32(b[8:12]))
	var pages []uint32
	for off := max(from, walHeader); off+walFrameHeader+pageSize <= int64(len(b)); off += walFrameHeader + pageSize {
		pages = append(pages, binary.BigEndian.Uint32(b[off:]))
	}
	return pages, int64(len(b))
}

// TestSavesWriteOnlyTheirBTrees pins which tables and indexes each save of
// a transfer writes. Every B-tree a commit touches costs it at least one
// page in the WAL (written, checksummed and synced at each commit), and a
// transfer commits six times: an index that a save writes for nothing is
// a cost paid on every save (issue #11). An update names only the columns
// a transition changes, so the request's list indexes, written by the
// create, are left alone. SQLite rewrites every index whose columns the
// UPDATE sets, whether or not their values changed, and every partial
// index whose predicate reads one: transfers_open_owner (owner, open) and
// transfers_active_call (its predicate reads state) on every save,
// transfers_closed_updated only once the transfer is closed (its
// predicate is open = 0), and transfers_owing_call only by the saves of a
// transfer that ended still open (with a cleanup), none here.
// sqlite_sequence is events' AUTOINCREMENT, which
// keeps event positions from being reused once the newest are purged.
func TestSavesWriteOnlyTheirBTrees(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()

	var salts [8]byte
	_, start := walPages(t, dir, 0, &salts)
	tr := newTransfer("1000")
	tr.Owner = "replica-a"
	storetest.Emit(tr, orchestrator.EventCreated, "", orchestrator.StatePending)
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	tr.Outbox = nil
	created, end := walPages(t, dir, start, &salts)
	saves := [][]uint32{created}
	states := []orchestrator.State{orchestrator.StateHolding, orchestrator.StateDialing, orchestrator.StateConsulting,
		orchestrator.StateCompleting, orchestrator.StateCompleted}
	for _, st := range states {
		storetest.Emit(tr, orchestrator.EventStateChanged, tr.State, st)
		tr.State, tr.UpdatedAt = st, time.Now()
		if err := s.Update(ctx, tr); err != nil {
			t.Fatal(err)
		}
		tr.Outbox = nil
		var pages []uint32
		pages, end = walPages(t, dir, end, &salts)
		saves = append(saves, pages)
	}

	// Name the pages after the writes: they may have allocated some.
	names := map[uint32]string{}
	rows, err := rawDB(t, dir).Query(`SELECT name, pageno FROM dbstat`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var page uint32
		if err := rows.Scan(&name, &page); err != nil {
			t.Fatal(err)
		}
		names[page] = name
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	// Every save of a transfer writes its row, its event and the states'
	// indexes.
	each := []string{"transfers", "transfers_state", "transfers_provider_state", "transfers_active_call", "transfers_open_owner",
		"events", "events_tenant", "events_transfer", "sqlite_sequence"}
	want := [][]string{
		// The create adds the id's key and the request's list indexes.
		append(slices.Clone(each), "sqlite_autoindex_transfers_1", "transfers_tenant", "transfers_provider",
			"transfers_external_id", "transfers_call", "transfers_call_id", "transfers_target"),
		each, each, each, each,
		// The closed transfer enters the purge's index.
		append(slices.Clone(each), "transfers_closed_updated"),
	}
	for i, pages := range saves {
		trees := map[string]bool{}
		for _, p := range pages {
			// Unnamed: the pointer-map pages of incremental vacuum; page
			// 1 (sqlite_schema) holds the file's header and its page
			// count. Both change when a save makes the file grow.
			if n := names[p]; n != "" && p != 1 {
				trees[n] = true
			}
		}
		got := slices.Sorted(maps.Keys(trees))
		slices.Sort(want[i])
		if !slices.Equal(got, want[i]) {
			what := "the create"
			if i > 0 {
				what = "the update to " + string(states[i-1])
			}
			t.Errorf("%s wrote %d pages of\n  %q\nwant pages of\n  %q", what, len(pages), got, want[i])
		}
	}
}
