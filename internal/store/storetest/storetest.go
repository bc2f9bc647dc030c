// Package storetest gives tests real, freshly migrated databases: a temporary
// SQLite file, and — when LUNA_TEST_POSTGRES_URL points at a PostgreSQL
// server (scripts/test.sh starts a throwaway one) — a new PostgreSQL
// database per test, dropped at cleanup.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

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
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate %s: %v", dialect, err)
	}
	return db
}

// URL returns a database URL for a new, empty database of the given
// dialect (not migrated), suitable for starting a whole Luna server.
func URL(t testing.TB, dialect store.Dialect) string {
	t.Helper()
	switch dialect {
	case store.SQLite:
		return "sqlite:" + filepath.Join(t.TempDir(), "luna.db")
	case store.Postgres:
		return newPostgresDatabase(t)
	}
	t.Fatalf("unknown dialect %q", dialect)
	return ""
}

func newPostgresDatabase(t testing.TB) string {
	t.Helper()
	adminURL := os.Getenv(PostgresURLEnv)
	if adminURL == "" {
		if os.Getenv(RequirePostgresEnv) == "1" {
			t.Fatalf("%s is not set but %s=1", PostgresURLEnv, RequirePostgresEnv)
		}
		t.Skipf("PostgreSQL tests skipped: %s is not set (scripts/test.sh sets it)", PostgresURLEnv)
	}
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		t.Fatalf("open postgres admin: %v", err)
	}
	defer admin.Close()
	name := "luna_t_" + randomHex(8)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
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
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresURLEnv, err)
	}
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
