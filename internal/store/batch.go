package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// BatchStatement is one statement of a batch: its text, its arguments and,
// for a statement that returns a row, where to scan it.
type BatchStatement struct {
	SQL  string
	Args []any
	Scan []any // nil: the statement's result is not read
}

// ErrNoBatch is RunBatch's answer on SQLite, which has no batches: the
// caller runs its statements in a transaction instead.
var ErrNoBatch = errors.New("store: batches need PostgreSQL")

// RunBatch sends statements to PostgreSQL in one round trip, and
// PostgreSQL runs them in order in one implicit transaction: each sees what
// the ones before it wrote (in READ COMMITTED each takes its own snapshot
// when it starts, so a statement after one that waited for a row lock sees
// what the lock's holder committed), locks are held to the end, and an
// error in any statement rolls them all back. Nothing waits for the client
// in between, so a row lock taken by the first statement is held for no
// round trip at all. A statement with Scan must return a row
// (sql.ErrNoRows otherwise, and the batch is rolled back).
func (db *DB) RunBatch(ctx context.Context, statements ...BatchStatement) error {
	if db.Dialect != Postgres {
		return ErrNoBatch
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(driverConn any) error {
		pc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("batch: driver connection is %T, not pgx", driverConn)
		}
		var b pgx.Batch
		for _, st := range statements {
			b.Queue(st.SQL, st.Args...)
		}
		results := pc.Conn().SendBatch(ctx, &b)
		for i, st := range statements {
			if st.Scan == nil {
				if _, err := results.Exec(); err != nil {
					results.Close()
					return fmt.Errorf("batch statement %d: %w", i+1, err)
				}
				continue
			}
			if err := results.QueryRow().Scan(st.Scan...); err != nil {
				results.Close()
				if errors.Is(err, pgx.ErrNoRows) {
					err = sql.ErrNoRows
				}
				return fmt.Errorf("batch statement %d: %w", i+1, err)
			}
		}
		return results.Close()
	})
}
