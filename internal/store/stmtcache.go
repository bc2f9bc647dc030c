package store

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
)

// SQLite compiles every statement it runs; the driver compiles a query
// anew on each call and discards it afterwards. Luna runs the same few
// dozen statements over and over, so its SQLite connections keep what they
// compiled: stmtCacheConnector wraps the driver's connector (the way the
// driver documents for interposing on connections) and each connection
// keeps its most recently used statements, by query text, for reuse.

// stmtCacheSize bounds the statements a connection keeps. Luna's fixed
// statements number far fewer; the queries built with a variable number of
// placeholders (IN lists, multi-row inserts) take the rest of the room and
// are the first to go.
const stmtCacheSize = 256

// stmtCacheConnector opens connections that reuse their statements.
type stmtCacheConnector struct {
	driver.Connector
}

func (c stmtCacheConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("sqlite connection %T lacks the context interfaces", conn)
	}
	return &stmtCacheConn{sqliteConn: sc, byQuery: map[string]*list.Element{}, lru: list.New()}, nil
}

// sqliteConn is what the driver's connections implement, and what a
// wrapper must forward (see modernc.org/sqlite's NewConnector).
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// contextStmt is a prepared statement that takes a context.
type contextStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// cachedStmt is a kept statement; busy while rows read from it are open
// (database/sql may run other statements on the connection meanwhile,
// even the same query, which then runs uncached).
type cachedStmt struct {
	query string
	stmt  contextStmt
	busy  bool
}

// stmtCacheConn is a connection that keeps its statements. database/sql
// uses a connection from one goroutine at a time, so it needs no lock.
type stmtCacheConn struct {
	sqliteConn
	byQuery map[string]*list.Element // of *cachedStmt
	lru     *list.List               // most recently used first
}

// Unwrap returns the driver's connection (modernc.org/sqlite's Limit
// looks through wrappers this way).
func (c *stmtCacheConn) Unwrap() driver.Conn { return c.sqliteConn }

// take returns the kept statement for query, compiling and keeping it on
// first use, or nil when it is busy (the caller then runs the query the
// ordinary way).
func (c *stmtCacheConn) take(ctx context.Context, query string) (*cachedStmt, error) {
	if e, ok := c.byQuery[query]; ok {
		cs := e.Value.(*cachedStmt)
		if cs.busy {
			return nil, nil
		}
		c.lru.MoveToFront(e)
		return cs, nil
	}
	st, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	stmt, ok := st.(contextStmt)
	if !ok {
		st.Close()
		return nil, nil
	}
	cs := &cachedStmt{query: query, stmt: stmt}
	c.byQuery[query] = c.lru.PushFront(cs)
	c.evict()
	return cs, nil
}

// evict drops the least recently used statements that are not busy while
// the connection keeps more than stmtCacheSize.
func (c *stmtCacheConn) evict() {
	for e := c.lru.Back(); e != nil && c.lru.Len() > stmtCacheSize; {
		prev := e.Prev()
		if cs := e.Value.(*cachedStmt); !cs.busy {
			c.lru.Remove(e)
			delete(c.byQuery, cs.query)
			cs.stmt.Close()
		}
		e = prev
	}
}

func (c *stmtCacheConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	cs, err := c.take(ctx, query)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	return cs.stmt.ExecContext(ctx, args)
}

func (c *stmtCacheConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	cs, err := c.take(ctx, query)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := cs.stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	sr, ok := rows.(sqliteRows)
	if !ok { // not the driver's rows: give the statement back, run uncached
		rows.Close()
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	cs.busy = true
	return &cachedRows{sqliteRows: sr, stmt: cs}, nil
}

// Close finalizes the kept statements, then closes the connection.
func (c *stmtCacheConn) Close() error {
	var errs []error
	for e := c.lru.Front(); e != nil; e = e.Next() {
		errs = append(errs, e.Value.(*cachedStmt).stmt.Close())
	}
	c.byQuery, c.lru = nil, list.New()
	errs = append(errs, c.sqliteConn.Close())
	return errors.Join(errs...)
}

// sqliteRows is what the driver's rows implement.
type sqliteRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

// cachedRows frees its statement for reuse when closed (the driver resets
// the statement then, and keeps it compiled).
type cachedRows struct {
	sqliteRows
	stmt *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.sqliteRows.Close()
	r.stmt.busy = false
	return err
}
