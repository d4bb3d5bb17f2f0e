package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/testenv"
)

// oldUpsert is how a binary from before the shared bodies (b6c18a7) writes
// desired states: etag, body and rev, nothing else.
const oldUpsert = `INSERT INTO desired (target_id, etag, body, rev) VALUES (?, ?, ?, ?)
	ON CONFLICT (target_id) DO UPDATE SET etag = excluded.etag, body = excluded.body, rev = excluded.rev`

func openFormatDB(t *testing.T, dsn string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openFormatStore opens the store on a fresh database of dsn, closed at
// the end of the test.
func openFormatStore(t *testing.T, dsn string) (*sqldb.DB, *SQL) {
	t.Helper()
	db := openFormatDB(t, dsn)
	s, err := Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return db, s
}

// wantDesired checks that every state of want reads back whole, by target
// and since revision 0, and that nothing else is stored.
func wantDesired(t *testing.T, s *SQL, want map[string]string) {
	t.Helper()
	ctx := context.Background()
	all, err := s.DesiredSince(ctx, 0)
	if err != nil || len(all) != len(want) {
		t.Fatalf("desired since 0: %d states, %v; want %d", len(all), err, len(want))
	}
	for _, d := range all {
		if d.Text() != want[d.Target] {
			t.Fatalf("desired since 0: %s = %q, want %q", d.Target, d.Text(), want[d.Target])
		}
		one, err := s.Desired(ctx, d.Target)
		if err != nil || string(one.Body) != want[d.Target] {
			t.Fatalf("desired %s = %q, %v; want %q", d.Target, one.Body, err, want[d.Target])
		}
	}
}

// TestOldWriter: a state in two parts rewritten by an older binary (a
// rolling upgrade's old leader) reads back as that binary wrote it, whole,
// and its rest is deleted once no row in two parts names it; an older
// reader finds an empty body, not a head, in a row in two parts.
func TestOldWriter(t *testing.T) {
	for name, dsn := range testenv.Databases("store") {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, s := openFormatStore(t, dsn(t))
			rest := `"models":[1]}`
			head := func(id, etag string) string { return `{"target":"` + id + `","etag":"` + etag + `",` }
			var ds []Desired
			for _, id := range []string{"t0", "t1", "t2"} {
				ds = append(ds, Desired{Target: id, ETag: "e1", Head: head(id, "e1"), Rest: rest})
			}
			if _, err := s.PutDesired(ctx, ds); err != nil {
				t.Fatal(err)
			}
			var oldRead string
			if err := db.QueryRowContext(ctx, db.Rebind(`SELECT body FROM desired WHERE target_id = ?`), "t1").Scan(&oldRead); err != nil || oldRead != "" {
				t.Fatalf("what an older binary reads of t1: %q, %v; want an empty body", oldRead, err)
			}
			whole := `{"target":"t0","etag":"e2","models":[]}`
			for _, id := range []string{"t0", "t1", "t2"} {
				if _, err := db.ExecContext(ctx, db.Rebind(oldUpsert), id, "e2", strings.Replace(whole, "t0", id, 1), 7); err != nil {
					t.Fatal(err)
				}
			}
			want := map[string]string{}
			for _, id := range []string{"t0", "t1", "t2"} {
				want[id] = strings.Replace(whole, "t0", id, 1)
			}
			wantDesired(t, s, want)
			// A new write adding a body deletes the one only rows
			// rewritten whole still name.
			if _, err := s.PutDesired(ctx, []Desired{{Target: "t3", ETag: "e3", Head: head("t3", "e3"), Rest: `"models":[3]}`}}); err != nil {
				t.Fatal(err)
			}
			want["t3"] = head("t3", "e3") + `"models":[3]}`
			wantDesired(t, s, want)
			var n int
			if err := db.QueryRowContext(ctx, db.Rebind(`SELECT COUNT(*) FROM desired_bodies WHERE body = ?`), rest).Scan(&n); err != nil || n != 0 {
				t.Fatalf("bodies of the rest no row in two parts names: %d, %v", n, err)
			}
		})
	}
}

// TestFormatMigration: rows written before format 2 (a row in two parts
// keeping its head in body, and one of them rewritten whole by an older
// binary since, its rest_id stale) read back whole after the migration,
// and a store of a newer format than this binary's is refused.
func TestFormatMigration(t *testing.T) {
	for name, dsn := range testenv.Databases("store") {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db := openFormatDB(t, dsn(t))
			steps := migrations(db)
			n := 0
			for n < len(steps) && !strings.HasPrefix(steps[n].SQLite, "ALTER TABLE desired ADD COLUMN head") {
				n++
			}
			if n == len(steps) {
				t.Fatal("no migration adds the head column")
			}
			if err := db.Migrate(ctx, "store", steps[:n]); err != nil {
				t.Fatal(err)
			}
			rest := `"models":[1]}`
			var id int64
			if err := db.QueryRowContext(ctx, db.Rebind(`INSERT INTO desired_bodies (sum, body) VALUES (?, ?) RETURNING id`), "sum", rest).Scan(&id); err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct {
				target, body string
				restID       sql.NullInt64
			}{
				{"split", `{"target":"split","etag":"e1",`, sql.NullInt64{Int64: id, Valid: true}},
				{"rewritten", `{"target":"rewritten","etag":"e2","models":[]}`, sql.NullInt64{Int64: id, Valid: true}},
				{"whole", `{"target":"whole","etag":"e3","models":[]}`, sql.NullInt64{}},
			} {
				if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO desired (target_id, etag, body, rev, rest_id) VALUES (?, ?, ?, 1, ?)`), r.target, "e", r.body, r.restID); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			wantDesired(t, s, map[string]string{
				"split":     `{"target":"split","etag":"e1",` + rest,
				"rewritten": `{"target":"rewritten","etag":"e2","models":[]}`,
				"whole":     `{"target":"whole","etag":"e3","models":[]}`,
			})
			newer := fmt.Sprint(storeFormat + 1)
			if err := s.PutMeta(ctx, formatKey, []byte(newer)); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(ctx, db); err == nil || !strings.Contains(err.Error(), "store format "+newer) {
				t.Fatalf("open a store of format %s: %v", newer, err)
			}
		})
	}
}

// TestDesiredReadWhileRewritten: reads of every state while four writers
// rewrite them all, each time in two parts with a body of its own (the
// bodies before deleted), return every state whole and fail none.
func TestDesiredReadWhileRewritten(t *testing.T) {
	for name, dsn := range testenv.Databases("store") {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			_, s := openFormatStore(t, dsn(t))
			states := func(w, i int) []Desired {
				ds := make([]Desired, 200)
				for j := range ds {
					id := fmt.Sprintf("t%03d", j)
					ds[j] = Desired{Target: id, ETag: "e", Head: `{"target":"` + id + `",`, Rest: fmt.Sprintf(`"w":%d,"i":%d}`, w, i)}
				}
				return ds
			}
			if _, err := s.PutDesired(ctx, states(0, 0)); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			writes := 0
			for w := 1; w <= 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := s.PutDesired(ctx, states(w, i)); err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						writes++
						mu.Unlock()
					}
				}()
			}
			halt := func() { close(stop); wg.Wait() }
			defer func() {
				if stop != nil {
					halt()
				}
			}()
			reads := 0
			for end := time.Now().Add(400 * time.Millisecond); time.Now().Before(end); reads++ {
				n := 0
				err := s.EachDesiredSince(ctx, 0, func(d Desired) error {
					n++
					if !json.Valid([]byte(d.Text())) || !strings.HasPrefix(d.Text(), `{"target":"`+d.Target+`",`) {
						return fmt.Errorf("%s = %q", d.Target, d.Text())
					}
					return nil
				})
				if err != nil || n != 200 {
					t.Fatalf("read %d: %d states, %v", reads, n, err)
				}
			}
			halt()
			stop = nil
			t.Logf("%d reads, %d writes", reads, writes)
		})
	}
}

// TestDesiredTwiceInOneWrite: a target twice in one write keeps the last.
func TestDesiredTwiceInOneWrite(t *testing.T) {
	for name, dsn := range testenv.Databases("store") {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			_, s := openFormatStore(t, dsn(t))
			if _, err := s.PutDesired(ctx, []Desired{
				{Target: "a", ETag: "1", Head: `{"target":"a",`, Rest: `"x":1}`},
				{Target: "b", ETag: "1", Body: []byte(`{"b":1}`)},
				{Target: "a", ETag: "2", Body: []byte(`{"a":2}`)},
				{Target: "b", ETag: "2", Head: `{"target":"b",`, Rest: `"x":2}`},
			}); err != nil {
				t.Fatal(err)
			}
			wantDesired(t, s, map[string]string{"a": `{"a":2}`, "b": `{"target":"b","x":2}`})
		})
	}
}

// TestDesiredFormat3: a row in two parts whose head is HeadOf its target
// and tag keeps none and reads back whole, other heads (a target needing
// quoting, a head of another shape) are kept; the newest revision moves
// with every write, a read since it finds nothing, and SQLite keeps no
// index on rev.
func TestDesiredFormat3(t *testing.T) {
	for name, dsn := range testenv.Databases("store") {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, s := openFormatStore(t, dsn(t))
			rest := `"models":[1]}`
			odd := "caf\u00e9 \"q\""
			ds := []Desired{
				{Target: "plain", ETag: "e1", Head: HeadOf("plain", "e1"), Rest: rest},
				{Target: odd, ETag: "e1", Head: HeadOf(odd, "e1"), Rest: rest},
				{Target: "other", ETag: "e1", Head: `{"target":"other",`, Rest: rest},
				{Target: "tagged", ETag: "e1", Head: HeadOf("tagged", "e2"), Rest: rest},
			}
			rev, err := s.PutDesired(ctx, ds)
			if err != nil {
				t.Fatal(err)
			}
			kept := map[string]string{}
			for _, d := range ds {
				var head string
				if err := db.QueryRowContext(ctx, db.Rebind(`SELECT head FROM desired WHERE target_id = ?`), d.Target).Scan(&head); err != nil {
					t.Fatal(err)
				}
				kept[d.Target] = head
			}
			if kept["plain"] != "" || kept[odd] != HeadOf(odd, "e1") || kept["other"] != `{"target":"other",` || kept["tagged"] != HeadOf("tagged", "e2") {
				t.Fatalf("heads kept: %q", kept)
			}
			want := map[string]string{}
			for _, d := range ds {
				want[d.Target] = d.Head + rest
			}
			wantDesired(t, s, want)
			if got, err := s.DesiredSince(ctx, rev); err != nil || len(got) != 0 {
				t.Fatalf("desired since the newest revision: %d, %v", len(got), err)
			}
			rev2, err := s.PutDesired(ctx, []Desired{{Target: "plain", ETag: "e3", Head: HeadOf("plain", "e3"), Rest: rest}})
			if err != nil || rev2 != rev+1 {
				t.Fatalf("next revision %d after %d, %v", rev2, rev, err)
			}
			got, err := s.DesiredSince(ctx, rev)
			if err != nil || len(got) != 1 || got[0].Text() != HeadOf("plain", "e3")+rest || got[0].Rev != rev2 {
				t.Fatalf("desired since %d: %+v, %v", rev, got, err)
			}
			// More rows than a statement takes, all keeping no head (the
			// statement binding three values a row), then every other
			// one keeping its own.
			many := map[string]string{}
			var batch []Desired
			for i := range 1203 {
				id := fmt.Sprintf("m%04d", i)
				h := HeadOf(id, "e4")
				if i%2 == 1 && i > 1000 {
					h = `{"target":"` + id + `",`
				}
				batch = append(batch, Desired{Target: id, ETag: "e4", Head: h, Rest: rest})
				many[id] = h + rest
			}
			rev3, err := s.PutDesired(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			got, err = s.DesiredSince(ctx, rev2)
			if err != nil || len(got) != len(many) {
				t.Fatalf("desired since %d: %d, %v", rev2, len(got), err)
			}
			for _, d := range got {
				if d.Text() != many[d.Target] || d.Rev != rev3 {
					t.Fatalf("%s = %q at %d, want %q at %d", d.Target, d.Text(), d.Rev, many[d.Target], rev3)
				}
			}
			if db.Dialect == sqldb.SQLite {
				var n int
				if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'desired_rev'`).Scan(&n); err != nil || n != 0 {
					t.Fatalf("desired_rev indexes: %d, %v", n, err)
				}
			}
		})
	}
}

func TestIsHeadOf(t *testing.T) {
	for _, c := range []struct {
		head, target, etag string
		want               bool
	}{
		{HeadOf("a", "e"), "a", "e", true},
		{HeadOf("dev-000001", "0123abcd"), "dev-000001", "0123abcd", true},
		{HeadOf("a", "e"), "a", "f", false},
		{HeadOf("a", "e"), "b", "e", false},
		{HeadOf("ab", "e"), "a", "be", false},
		{HeadOf(`a"b`, "e"), `a"b`, "e", false},
		{HeadOf("é", "e"), "é", "e", false},
		{`{"target":"a","etag":"e",`[:24], "a", "e", false},
		{"", "", "", false},
		{`{"target":"a","etag":"e"}`, "a", "e", false},
	} {
		if got := isHeadOf(c.head, c.target, c.etag); got != c.want {
			t.Errorf("isHeadOf(%q, %q, %q) = %v, want %v", c.head, c.target, c.etag, got, c.want)
		}
	}
}

// TestFormat3MigrationKilled: a migration to format 3 killed after any of
// its steps (each commits on its own) leaves a store that a binary of
// format 2 either refuses, or writes to at a revision the counter then
// moves past: the next write of this binary is read by a reader that saw
// the older binary's write (its since is that write's revision).
func TestFormat3MigrationKilled(t *testing.T) {
	for name, dsn := range testenv.Databases("store") {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			all := migrations(openFormatDB(t, dsn(t)))
			first := 0
			for first < len(all) && !strings.Contains(all[first].SQLite, "'2') ON CONFLICT") {
				first++
			}
			first++ // the first step of format 3
			if first >= len(all) {
				t.Fatal("no format 2 step")
			}
			for k := first; k < len(all); k++ {
				t.Run(fmt.Sprint("killed after ", k-first), func(t *testing.T) {
					db := openFormatDB(t, dsn(t))
					if err := db.Migrate(ctx, "store", all[:first]); err != nil {
						t.Fatal(err)
					}
					if _, err := db.ExecContext(ctx, db.Rebind(oldUpsert), "a", "e1", `{"a":1}`, 5); err != nil {
						t.Fatal(err)
					}
					// kill -9 after step k: the steps before it committed.
					if err := db.Migrate(ctx, "store", all[:k]); err != nil {
						t.Fatal(err)
					}
					var format string
					if err := db.QueryRowContext(ctx, db.Rebind(`SELECT value FROM meta WHERE key = ?`), formatKey).Scan(&format); err != nil {
						t.Fatal(err)
					}
					old := int64(0)
					if format == "2" {
						// A binary of format 2 opens it (rolled back to) and
						// writes as it does, at MAX(rev) + 1.
						if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(rev), 0) + 1 FROM desired`).Scan(&old); err != nil {
							t.Fatal(err)
						}
						if _, err := db.ExecContext(ctx, db.Rebind(oldUpsert), "b", "e1", `{"b":1}`, old); err != nil {
							t.Fatal(err)
						}
					}
					s, err := Open(ctx, db)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					rev, err := s.PutDesired(ctx, []Desired{{Target: "c", ETag: "e1", Body: []byte(`{"c":1}`)}})
					if err != nil {
						t.Fatal(err)
					}
					if old != 0 {
						got, err := s.DesiredSince(ctx, old)
						if err != nil || len(got) != 1 || got[0].Target != "c" {
							t.Fatalf("format %s after the kill: an older binary wrote at %d, this one at %d; since %d: %+v, %v", format, old, rev, old, got, err)
						}
					}
				})
			}
		})
	}
}

// TestDesiredEmptyHead: a state in two parts with no head (Head "", the
// whole state its Rest) reads back as written, not with HeadOf its target
// put before it: an empty head is what a row keeps for one HeadOf
// rebuilds.
func TestDesiredEmptyHead(t *testing.T) {
	for name, dsn := range testenv.Databases("store") {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			_, s := openFormatStore(t, dsn(t))
			if _, err := s.PutDesired(ctx, []Desired{{Target: "a", ETag: "e1", Rest: `{"a":1}`}}); err != nil {
				t.Fatal(err)
			}
			wantDesired(t, s, map[string]string{"a": `{"a":1}`})
		})
	}
}

// TestOlderLeaderRevisions: on PostgreSQL, states an older leader still
// running writes at MAX(rev) + 1 (it does not move desired_revision) are
// read by a newer reader, and a newer write takes a revision after theirs.
// SQLite keeps one process and no index on rev: the counter alone.
func TestOlderLeaderRevisions(t *testing.T) {
	for name, dsn := range testenv.Databases("store") {
		t.Run(name, func(t *testing.T) {
			db, s := openFormatStore(t, dsn(t))
			if db.Dialect != sqldb.Postgres {
				t.Skip("SQLite: one process, the counter alone")
			}
			ctx := context.Background()
			rev, err := s.PutDesired(ctx, []Desired{{Target: "a", ETag: "e1", Head: HeadOf("a", "e1"), Rest: `"models":[1]}`}})
			if err != nil {
				t.Fatal(err)
			}
			var old int64
			if err := db.QueryRowContext(ctx, `SELECT MAX(rev) + 1 FROM desired`).Scan(&old); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, db.Rebind(oldUpsert), "b", "e2", `{"target":"b","etag":"e2","models":[]}`, old); err != nil {
				t.Fatal(err)
			}
			got, err := s.DesiredSince(ctx, rev)
			if err != nil || len(got) != 1 || got[0].Target != "b" || got[0].Rev != old {
				t.Fatalf("desired since %d after the older leader's write at %d: %+v, %v", rev, old, got, err)
			}
			next, err := s.PutDesired(ctx, []Desired{{Target: "c", ETag: "e3", Head: HeadOf("c", "e3"), Rest: `"models":[3]}`}})
			if err != nil || next <= old {
				t.Fatalf("next revision %d after the older leader's %d, %v", next, old, err)
			}
			got, err = s.DesiredSince(ctx, old)
			if err != nil || len(got) != 1 || got[0].Target != "c" {
				t.Fatalf("desired since %d: %+v, %v", old, got, err)
			}
		})
	}
}
