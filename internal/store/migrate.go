package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Migrations are plain numbered SQL files, one folder per dialect, embedded
// in the binary so `luna serve` can bring any database up to date.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// Migrate applies every pending migration. On PostgreSQL a session advisory
// lock serialises instances that start at the same time; on SQLite the
// single writer does the same.
func (db *DB) Migrate(ctx context.Context) (applied int, err error) {
	provider, err := db.migrationProvider()
	if err != nil {
		return 0, err
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	return len(results), nil
}

// SchemaVersion returns the newest applied migration version.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	provider, err := db.migrationProvider()
	if err != nil {
		return 0, err
	}
	return provider.GetDBVersion(ctx)
}

// Migrations returns a dialect's embedded migration files (storetest names
// its migrated template databases after their hash).
func Migrations(dialect Dialect) (fs.FS, error) {
	dir := "migrations/sqlite"
	if dialect == Postgres {
		dir = "migrations/postgres"
	}
	fsys, err := fs.Sub(migrations, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return fsys, nil
}

func (db *DB) migrationProvider() (*goose.Provider, error) {
	gooseDialect := goose.DialectSQLite3
	var opts []goose.ProviderOption
	if db.Dialect == Postgres {
		gooseDialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	fsys, err := Migrations(db.Dialect)
	if err != nil {
		return nil, err
	}
	provider, err := goose.NewProvider(gooseDialect, db.DB, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return provider, nil
}
