package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"luna/internal/preflight"
	"luna/internal/store"
)

// ErrCheckFailed is returned when `luna check` finds a part that does not answer.
var ErrCheckFailed = errors.New("a check failed")

// runCheck reads the serve flags and checks, without changing anything,
// that the database, models, image backend, storage and Clerk answer: one
// line each.
func runCheck(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("check", env.Getenv)
	var sf serveFlags
	sf.register(fs)
	var timeout time.Duration
	fs.DurationVar(&timeout, "timeout", 15*time.Second, "how long each check may take")
	if err := parseFlags(fs, args, env.Stderr); err != nil {
		return err
	}
	cfg, err := sf.config(env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "luna check: %v\n", err)
		return ErrUsage
	}
	dbCtx, cancel := context.WithTimeout(ctx, timeout)
	results := []preflight.Result{checkDatabase(dbCtx, sf.db)}
	cancel()
	results = append(results, preflight.Run(ctx, cfg, preflight.Options{Timeout: timeout})...)
	failed := 0
	for _, r := range results {
		fmt.Fprintln(env.Stdout, r)
		if r.Status == preflight.Fail {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d", ErrCheckFailed, failed, len(results))
	}
	return nil
}

// checkDatabase connects to the database and reads its schema version. A
// missing SQLite file is fine (serve creates it) and is not created here.
func checkDatabase(ctx context.Context, d dbFlags) preflight.Result {
	r := preflight.Result{Name: "database", Status: preflight.Fail}
	if path, err := d.sqlitePath(); err == nil {
		r.Name = "database (sqlite)"
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			r.Status, r.Detail = preflight.OK, fmt.Sprintf("no database at %s yet: serve creates it", path)
			return r
		}
	} else if d.databaseURL != "" {
		r.Name = "database (postgres)"
	}
	db, err := store.Open(ctx, d.databaseURL, d.dataDir)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	defer db.Close()
	// Read directly: goose's SchemaVersion creates its table when missing.
	var version int64
	err = db.QueryRowContext(ctx, "SELECT coalesce(max(version_id), 0) FROM goose_db_version").Scan(&version)
	if err != nil {
		r.Status, r.Detail = preflight.OK, fmt.Sprintf("%s answers; no Luna schema yet: serve applies the migrations", db.Location)
		return r
	}
	r.Status, r.Detail = preflight.OK, fmt.Sprintf("%s answers, schema version %d", db.Location, version)
	return r
}
