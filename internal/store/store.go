// Package store opens Luna's database — an embedded SQLite file or a
// PostgreSQL server — applies its migrations and runs transactions. The rest
// of Luna writes portable SQL with $1-style placeholders against *sql.Tx; the
// few places where the two databases differ ask DB.Dialect.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names the database behind a DB.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

// DB is an open database.
type DB struct {
	*sql.DB
	Dialect Dialect
	// Location describes where the data lives, without secrets (a file
	// path or a host/database), for logs.
	Location string

	commits    atomic.Int64 // transactions committed by InTx
	statements atomic.Int64 // PostgreSQL: statements sent, BEGIN and COMMIT included
}

// Statements returns how many SQL statements this process has sent to
// PostgreSQL since Open (BEGIN and COMMIT included; cmd/lunabench reports
// it per reply); ok is false on SQLite, where nothing counts them.
func (db *DB) Statements() (n int64, ok bool) {
	return db.statements.Load(), db.Dialect == Postgres
}

// statementCounter is a pgx tracer that counts the statements sent.
type statementCounter struct{ n *atomic.Int64 }

func (c statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart counts a batch's statements (DB.RunBatch).
func (c statementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	c.n.Add(int64(d.Batch.Len()))
	return ctx
}

func (statementCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (statementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// Transactions returns how many transactions InTx has committed since Open
// (cmd/lunabench reports it as database transactions per second).
func (db *DB) Transactions() int64 { return db.commits.Load() }

// Open connects to the database described by databaseURL. An empty URL
// means the SQLite file luna.db inside dataDir (created if missing);
// "postgres://" or "postgresql://" URLs mean PostgreSQL; "sqlite:PATH" or
// "file:PATH" name another SQLite file.
func Open(ctx context.Context, databaseURL, dataDir string) (*DB, error) {
	switch {
	case databaseURL == "":
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		return openSQLite(ctx, filepath.Join(dataDir, "luna.db"))
	case strings.HasPrefix(databaseURL, "sqlite:"):
		return openSQLite(ctx, strings.TrimPrefix(databaseURL, "sqlite:"))
	case strings.HasPrefix(databaseURL, "file:"):
		return openSQLite(ctx, strings.TrimPrefix(databaseURL, "file:"))
	case strings.HasPrefix(databaseURL, "postgres://"), strings.HasPrefix(databaseURL, "postgresql://"):
		return openPostgres(ctx, databaseURL)
	default:
		return nil, fmt.Errorf("unsupported database URL (want postgres://… or empty for SQLite)")
	}
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create database dir: %w", err)
		}
	}
	// WAL lets readers in other processes (the admin CLI) work beside the
	// server; busy_timeout makes a second process wait for the writer
	// instead of failing; _txlock=immediate takes the write lock at BEGIN so
	// two processes never deadlock upgrading read locks.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate"
	connector, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db := sql.OpenDB(stmtCacheConnector{connector})
	// SQLite has one writer. One connection serialises every transaction in
	// this process, which is what keeps the credit checks simple and correct;
	// the River SQLite driver asks for the same.
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &DB{DB: db, Dialect: SQLite, Location: path}, nil
}

// DefaultPostgresConns is how many connections an instance opens to
// PostgreSQL at most, unless told otherwise (SetPoolSize). A connection
// serves one statement or transaction at a time; a transaction waiting for
// a row lock keeps its connection. Three instances at this size stay under
// PostgreSQL's default max_connections of 100.
const DefaultPostgresConns = 30

// SetPoolSize sets the most connections this process opens to PostgreSQL
// (SQLite keeps its one connection).
func (db *DB) SetPoolSize(n int) {
	if db.Dialect != Postgres || n <= 0 {
		return
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
}

func openPostgres(ctx context.Context, databaseURL string) (*DB, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	out := &DB{Dialect: Postgres}
	cfg.Tracer = statementCounter{&out.statements}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(DefaultPostgresConns)
	db.SetMaxIdleConns(DefaultPostgresConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	location := "postgres"
	if u, err := url.Parse(databaseURL); err == nil {
		location = "postgres://" + u.Host + u.Path
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s: %w", location, err)
	}
	out.DB, out.Location = db, location
	return out, nil
}

// InTx runs fn inside a transaction and commits it when fn returns nil. Any
// error (or panic) rolls the transaction back.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	db.commits.Add(1)
	return nil
}

// Ping checks that the database answers, for readiness probes.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// IsUniqueViolation reports whether err is a unique-constraint violation.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsCheckViolation reports whether err is a CHECK-constraint violation.
func IsCheckViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23514"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_CHECK
	}
	return false
}

// NowMillis is how Luna stores instants: Unix milliseconds, the same on both
// databases.
func NowMillis(t time.Time) int64 { return t.UnixMilli() }

// Time converts stored Unix milliseconds back to a UTC time.
func Time(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// NullTime converts a nullable stored instant.
func NullTime(ms sql.NullInt64) *time.Time {
	if !ms.Valid {
		return nil
	}
	t := Time(ms.Int64)
	return &t
}

// IsForeignKeyViolation reports whether err is a foreign-key violation.
func IsForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23503"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}
