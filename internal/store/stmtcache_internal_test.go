package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// openCachedSQLite opens a SQLite database the way Open does, with a
// table t(id INTEGER PRIMARY KEY, v TEXT NOT NULL).
func openCachedSQLite(t *testing.T) *DB {
	t.Helper()
	db, err := openSQLite(context.Background(), filepath.Join(t.TempDir(), "cache.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// kept returns the statements the database's one connection keeps.
func kept(t *testing.T, db *DB) (queries map[string]bool, busy int) {
	t.Helper()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	queries = map[string]bool{}
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*stmtCacheConn)
		if !ok {
			return fmt.Errorf("connection is %T, not *stmtCacheConn", dc)
		}
		if len(c.byQuery) != c.lru.Len() {
			return fmt.Errorf("index has %d statements, list %d", len(c.byQuery), c.lru.Len())
		}
		for e := c.lru.Front(); e != nil; e = e.Next() {
			cs := e.Value.(*cachedStmt)
			queries[cs.query] = true
			if cs.busy {
				busy++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return queries, busy
}

func TestStatementsAreKeptAndReused(t *testing.T) {
	ctx := context.Background()
	db := openCachedSQLite(t)
	const insert = `INSERT INTO t (id, v) VALUES ($1, $2)`
	const get = `SELECT v FROM t WHERE id = $1`
	for i := range 50 {
		if _, err := db.ExecContext(ctx, insert, i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		var v string
		if err := db.QueryRowContext(ctx, get, i).Scan(&v); err != nil || v != fmt.Sprint("v", i) {
			t.Fatalf("row %d: %q, %v", i, v, err)
		}
	}
	queries, busy := kept(t, db)
	if !queries[insert] || !queries[get] || busy != 0 {
		t.Fatalf("kept %v with %d busy; want both statements, none busy", queries, busy)
	}

	// A failing run (a duplicate key) leaves the statement usable.
	if _, err := db.ExecContext(ctx, insert, 1, "again"); err == nil || !IsUniqueViolation(err) {
		t.Fatalf("duplicate insert: %v, want a unique violation", err)
	}
	if _, err := db.ExecContext(ctx, insert, 100, "v100"); err != nil {
		t.Fatalf("insert after a failed run: %v", err)
	}

	// A rolled-back transaction leaves nothing, through kept statements.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, insert, 200, "gone"); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE id = 200`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rolled-back row: count %d, %v", n, err)
	}
}

// The same query run again while rows of it are open runs on its own, and
// both read their own rows.
func TestBusyStatementIsNotShared(t *testing.T) {
	ctx := context.Background()
	db := openCachedSQLite(t)
	for i := range 3 {
		if _, err := db.ExecContext(ctx, `INSERT INTO t (id, v) VALUES ($1, $2)`, i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	const list = `SELECT id, v FROM t WHERE id >= $1 ORDER BY id`
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	outer, err := tx.QueryContext(ctx, list, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for outer.Next() {
		var id int
		var v string
		if err := outer.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		// The inner run of the same query, from id+1, while outer is open.
		inner, err := tx.QueryContext(ctx, list, id+1)
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for inner.Next() {
			count++
		}
		if err := inner.Close(); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s:%d", v, count))
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if want := "[v0:2 v1:1 v2:0]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	tx.Rollback()
	if _, busy := kept(t, db); busy != 0 {
		t.Fatalf("%d statements still busy after their rows closed", busy)
	}
}

// A connection keeps at most stmtCacheSize statements, dropping the least
// recently used; queries keep answering right throughout.
func TestStatementCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	db := openCachedSQLite(t)
	const hot = `SELECT COUNT(*) FROM t`
	for i := range stmtCacheSize + 40 {
		// A distinct text each time, as an IN list of i+1 placeholders.
		args := []any{}
		marks := ""
		for j := range i%7 + 1 {
			if j > 0 {
				marks += ", "
			}
			marks += fmt.Sprintf("$%d", j+1)
			args = append(args, j)
		}
		q := fmt.Sprintf(`SELECT %d FROM t WHERE id IN (%s) UNION ALL SELECT %d`, i, marks, i)
		var got int
		if err := db.QueryRowContext(ctx, q, args...).Scan(&got); err != nil || got != i {
			t.Fatalf("query %d: %d, %v", i, got, err)
		}
		var n int
		if err := db.QueryRowContext(ctx, hot).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	queries, _ := kept(t, db)
	if len(queries) != stmtCacheSize {
		t.Fatalf("kept %d statements, want %d", len(queries), stmtCacheSize)
	}
	if !queries[hot] {
		t.Fatalf("the statement used all along was dropped")
	}
}

// Closing the database finalizes what its connection kept.
func TestClosedDatabaseFinalizesStatements(t *testing.T) {
	db, err := openSQLite(context.Background(), filepath.Join(t.TempDir(), "close.db"))
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := db.QueryRow(`SELECT 1`).Scan(&one); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := db.QueryRow(`SELECT 1`).Scan(&one); err == nil || err == sql.ErrNoRows {
		t.Fatalf("query after close: %v, want an error", err)
	}
}

// BenchmarkKeptStatement compares a point query through a connection that
// keeps its statements with the driver's own (compiling each time).
func BenchmarkKeptStatement(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "bench.db")
	kept, err := openSQLite(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer kept.Close()
	if _, err := kept.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, w INTEGER, x INTEGER)`); err != nil {
		b.Fatal(err)
	}
	if _, err := kept.Exec(`INSERT INTO t (id, v, w, x) VALUES (1, 'one', 2, 3)`); err != nil {
		b.Fatal(err)
	}
	plain, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	plain.SetMaxOpenConns(1)
	const q = `SELECT id, v, COALESCE(w, 0), x FROM t WHERE id = $1 AND v <> '' AND x IN (1, 2, 3)`
	for _, db := range []struct {
		name string
		db   *sql.DB
	}{{"kept", kept.DB}, {"compiled each time", plain}} {
		b.Run(db.name, func(b *testing.B) {
			for b.Loop() {
				var id, w, x int
				var v string
				if err := db.db.QueryRowContext(ctx, q, 1).Scan(&id, &v, &w, &x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
