// Package storetest gives tests real, freshly migrated databases: a temporary
// SQLite file, and — when LUNA_TEST_POSTGRES_URL points at a PostgreSQL
// server (scripts/test.sh starts a throwaway one) — a new PostgreSQL
// database per test, dropped at cleanup. PostgreSQL test databases are
// clones (CREATE DATABASE … TEMPLATE) of a template migrated once per set
// of migrations, which is much faster than migrating each one.
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/rivermigrate"

	"luna/internal/store"
)

// PostgresURLEnv names the variable holding the admin URL of the test
// PostgreSQL server.
const PostgresURLEnv = "LUNA_TEST_POSTGRES_URL"

// RequirePostgresEnv, when "1", turns a missing PostgreSQL into a test
// failure instead of a skip; the README's test command sets it.
const RequirePostgresEnv = "LUNA_TEST_REQUIRE_POSTGRES"

// Dialects lists the databases every data test runs against.
var Dialects = []store.Dialect{store.SQLite, store.Postgres}

// ForEachDialect runs fn as a parallel subtest per database, each with its
// own freshly migrated database.
func ForEachDialect(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, dialect := range Dialects {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			fn(t, Open(t, dialect))
		})
	}
}

// Open returns a new, migrated database of the given dialect, closed (and on
// PostgreSQL dropped) when the test ends.
func Open(t testing.TB, dialect store.Dialect) *store.DB {
	t.Helper()
	url := URL(t, dialect)
	db, err := store.Open(context.Background(), url, t.TempDir())
	if err != nil {
		t.Fatalf("open %s: %v", dialect, err)
	}
	t.Cleanup(func() { db.Close() })
	if dialect == store.SQLite { // PostgreSQL's clone is migrated already
		if _, err := db.Migrate(context.Background()); err != nil {
			t.Fatalf("migrate %s: %v", dialect, err)
		}
	}
	return db
}

// URL returns a database URL for a new database of the given dialect,
// suitable for starting a whole Luna server (which migrates it): an empty
// SQLite file, or on PostgreSQL a clone of the migrated template (Luna's
// and River's migrations are applied already, so start-up's are no-ops).
func URL(t testing.TB, dialect store.Dialect) string {
	t.Helper()
	switch dialect {
	case store.SQLite:
		return "sqlite:" + filepath.Join(t.TempDir(), "luna.db")
	case store.Postgres:
		admin := postgresAdminURL(t)
		tmpl, err := migratedTemplate(admin)
		if err != nil {
			t.Fatalf("postgres template database: %v", err)
		}
		return newPostgresDatabase(t, admin, tmpl)
	}
	t.Fatalf("unknown dialect %q", dialect)
	return ""
}

// EmptyURL returns a database URL for a new, empty (not migrated) database
// of the given dialect, for tests of the migrations themselves.
func EmptyURL(t testing.TB, dialect store.Dialect) string {
	t.Helper()
	switch dialect {
	case store.SQLite:
		return "sqlite:" + filepath.Join(t.TempDir(), "luna.db")
	case store.Postgres:
		return newPostgresDatabase(t, postgresAdminURL(t), "")
	}
	t.Fatalf("unknown dialect %q", dialect)
	return ""
}

func postgresAdminURL(t testing.TB) string {
	t.Helper()
	adminURL := os.Getenv(PostgresURLEnv)
	if adminURL == "" {
		if os.Getenv(RequirePostgresEnv) == "1" {
			t.Fatalf("%s is not set but %s=1", PostgresURLEnv, RequirePostgresEnv)
		}
		t.Skipf("PostgreSQL tests skipped: %s is not set (scripts/test.sh sets it)", PostgresURLEnv)
	}
	return adminURL
}

// newPostgresDatabase creates a database, a copy of template unless that is
// empty, and drops it when the test ends.
func newPostgresDatabase(t testing.TB, adminURL, template string) string {
	t.Helper()
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		t.Fatalf("open postgres admin: %v", err)
	}
	defer admin.Close()
	name := "luna_t_" + randomHex(8)
	create := "CREATE DATABASE " + name
	if template != "" {
		create += " TEMPLATE " + template
	}
	if _, err := admin.Exec(create); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", adminURL)
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") // best effort
	})
	u, err := databaseURL(adminURL, name)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresURLEnv, err)
	}
	return u
}

func databaseURL(adminURL, name string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// template remembers this process's migrated template database. A test
// helper's process-wide state: every test of the process shares it.
var template struct {
	mu   sync.Mutex
	name string
}

// templateLockID is the advisory lock (on the admin database) that test
// processes take in turn to build a template.
const templateLockID = 7_345_118_101

// migratedTemplate returns the name of a database migrated to the newest
// Luna and River migrations, building it on the first call of the first
// test process that needs it. Its name is a hash of the migrations, so a
// changed migration gets a new template. Test processes running at once
// (go test ./... runs packages in parallel against one server) take an
// advisory lock in turn; the builder migrates a scratch database and
// renames it to the template's name only when done, so a database of that
// name is always complete. Nobody may connect to a template while it is
// cloned: the template refuses connections.
func migratedTemplate(adminURL string) (string, error) {
	template.mu.Lock()
	defer template.mu.Unlock()
	if template.name != "" {
		return template.name, nil
	}
	name, err := templateName()
	if err != nil {
		return "", err
	}
	if err := ensureTemplate(context.Background(), adminURL, name); err != nil {
		return "", err
	}
	template.name = name
	return name, nil
}

// ensureTemplate builds the template database name unless it exists, taking
// the template lock first.
func ensureTemplate(ctx context.Context, adminURL, name string) error {
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return fmt.Errorf("open postgres admin: %w", err)
	}
	defer admin.Close()
	conn, err := admin.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect postgres admin: %w", err)
	}
	defer conn.Close() // also releases the lock
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, templateLockID); err != nil {
		return fmt.Errorf("template lock: %w", err)
	}
	var exists bool
	if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look for template %s: %w", name, err)
	}
	if exists {
		return nil
	}
	return buildTemplate(ctx, conn, adminURL, name)
}

// buildTemplate migrates a scratch database (left over by a builder that
// died, it is dropped first) and renames it to name.
func buildTemplate(ctx context.Context, admin *sql.Conn, adminURL, name string) error {
	scratch := name + "_build"
	for _, q := range []string{
		"DROP DATABASE IF EXISTS " + scratch + " WITH (FORCE)",
		"CREATE DATABASE " + scratch,
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("template: %s: %w", q, err)
		}
	}
	u, err := databaseURL(adminURL, scratch)
	if err != nil {
		return fmt.Errorf("parse %s: %w", PostgresURLEnv, err)
	}
	db, err := store.Open(ctx, u, "")
	if err != nil {
		return fmt.Errorf("template: %w", err)
	}
	err = migrateAll(ctx, db)
	db.Close()
	if err != nil {
		return fmt.Errorf("template: %w", err)
	}
	for _, q := range []string{
		"ALTER DATABASE " + scratch + " WITH ALLOW_CONNECTIONS false IS_TEMPLATE true",
		"ALTER DATABASE " + scratch + " RENAME TO " + name, // waits for our closed sessions to end
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("template: %s: %w", q, err)
		}
	}
	return nil
}

// migrateAll applies Luna's migrations and River's (as app start-up does
// with images.MigrateQueue, which storetest cannot import: images' own
// dependencies test with storetest).
func migrateAll(ctx context.Context, db *store.DB) error {
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}
	migrator, err := rivermigrate.New(riverdatabasesql.New(db.DB), nil)
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	return nil
}

// templateName hashes Luna's PostgreSQL migrations and River's.
func templateName() (string, error) {
	h := sha256.New()
	fsys, err := store.Migrations(store.Postgres)
	if err != nil {
		return "", err
	}
	err = fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00", path, len(b), b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash migrations: %w", err)
	}
	migrator, err := rivermigrate.New(riverdatabasesql.New(nil), nil)
	if err != nil {
		return "", fmt.Errorf("river migrations: %w", err)
	}
	for _, m := range migrator.AllVersions() {
		fmt.Fprintf(h, "river\x00%s\x00%s\x00", strconv.Itoa(m.Version), m.SQLUp)
	}
	return "luna_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
