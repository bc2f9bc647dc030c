package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// pgDatabase is a fresh PostgreSQL database created for one run on the
// server of an admin URL, and dropped afterwards.
type pgDatabase struct {
	admin   *sql.DB
	name    string
	url     string // of the new database
	dataDir string // the server's data directory, when readable; for its CPU time
}

// createPGDatabase creates a fresh database on the server adminURL points
// at (through the database adminURL names).
func createPGDatabase(ctx context.Context, adminURL string) (*pgDatabase, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return nil, err
	}
	admin.SetMaxOpenConns(1)
	b := make([]byte, 6)
	rand.Read(b) // crypto/rand does not fail
	p := &pgDatabase{admin: admin, name: "lunabench_" + hex.EncodeToString(b)}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+p.name); err != nil {
		admin.Close()
		return nil, fmt.Errorf("create database %s: %w", p.name, err)
	}
	u.Path = "/" + p.name
	p.url = u.String()
	// Superusers (and pg_read_all_settings) may read it; otherwise the
	// server's CPU time is not reported.
	var dir string
	if admin.QueryRowContext(ctx, "SELECT setting FROM pg_settings WHERE name = 'data_directory'").Scan(&dir) == nil {
		if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
			p.dataDir = dir
		}
	}
	return p, nil
}

// drop removes the database.
func (p *pgDatabase) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := p.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+p.name+" WITH (FORCE)")
	return errors.Join(err, p.admin.Close())
}

// xactCommit is the server's count of transactions committed in the
// database: explicit ones and every statement run outside one. The admin
// connection is to another database, so reading it does not count.
func (p *pgDatabase) xactCommit(ctx context.Context) (int64, error) {
	var n int64
	err := p.admin.QueryRowContext(ctx, "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", p.name).Scan(&n)
	return n, err
}

// statsFlushWait is how long a PostgreSQL 15+ backend may keep its
// statistics before publishing them when it is idle (PGSTAT_IDLE_INTERVAL
// is 10 s); pg_stat_database lags by up to that much.
const statsFlushWait = 11 * time.Second

// serverCPU is the CPU time used by the PostgreSQL server so far: the
// postmaster, its live children, and the children it has reaped (backends
// that exited). ok is false when the server's processes cannot be read
// (another machine, another user's data directory, not Linux).
func (p *pgDatabase) serverCPU() (cpu time.Duration, ok bool) {
	if p.dataDir == "" {
		return 0, false
	}
	pidFile, err := os.ReadFile(filepath.Join(p.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	line, _, _ := bytes.Cut(pidFile, []byte("\n"))
	postmaster, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil {
		return 0, false
	}
	st, ok := readProcStat(postmaster)
	if !ok {
		return 0, false
	}
	ticks := st.utime + st.stime + st.cutime + st.cstime
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if child, ok := readProcStat(pid); ok && child.ppid == postmaster {
			ticks += child.utime + child.stime
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks, true
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// readProcStat reads the parent and CPU times of a process from
// /proc/PID/stat (fields 4 and 14–17; the command name, field 2, may hold
// spaces and parentheses, so fields are counted after its last ')').
func readProcStat(pid int) (procStat, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(data[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, false
	}
	num := func(field int) int64 {
		n, _ := strconv.ParseInt(string(f[field-3]), 10, 64)
		return n
	}
	return procStat{ppid: int(num(4)), utime: num(14), stime: num(15), cutime: num(16), cstime: num(17)}, true
}

// waitDisconnected waits until no session is connected to the database
// (Luna has closed its pool and its listener), then a little more for the
// exited backends' statistics and CPU time to reach the server's counters.
func (p *pgDatabase) waitDisconnected(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n int
		if err := p.admin.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", p.name).Scan(&n); err != nil {
			return fmt.Errorf("count sessions: %w", err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d sessions still connected to %s; its statistics may be incomplete", n, p.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	return nil
}
