package cli

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"luna/internal/store"
)

// runBackup writes a consistent copy of the SQLite database to a file
// while the server may be running. The copy is a plain SQLite database:
// restored by copying it to DIR/luna.db and serving with --data-dir DIR.
func runBackup(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("backup", env.Getenv)
	var d dbFlags
	d.register(fs)
	var to string
	var force bool
	fs.StringVar(&to, "to", "", "file to write the copy to (required)")
	fs.BoolVar(&force, "force", false, "replace the file if it exists")
	if err := parseFlags(fs, args, env.Stderr); err != nil {
		return err
	}
	if to == "" {
		fmt.Fprintln(env.Stderr, "luna backup: --to FILE is required")
		return ErrUsage
	}
	src, err := d.sqlitePath()
	if err != nil {
		return err
	}
	// Opening a missing file would create an empty database.
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("no SQLite database at %s: %w", src, err)
	}
	if !force {
		if _, err := os.Lstat(to); err == nil {
			return fmt.Errorf("%s exists; --force replaces it", to)
		}
	}
	db, err := store.Open(ctx, d.databaseURL, d.dataDir)
	if err != nil {
		return err
	}
	defer db.Close()
	version, err := db.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("%s is not a Luna database: %w", src, err)
	}
	size, err := backupSQLite(ctx, db.DB, to, force)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "backed up %s to %s: %d bytes, schema version %d\n", src, to, size, version)
	fmt.Fprintf(env.Stdout, "restore: with Luna stopped, copy it to DIR/luna.db and run luna serve --data-dir DIR\n")
	if images := filepath.Join(filepath.Dir(src), "images"); isDir(images) {
		fmt.Fprintf(env.Stdout, "the copy holds the database only: also copy %s and %s (local images)\n",
			images, filepath.Join(filepath.Dir(src), "url-signing.key"))
	}
	return nil
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}

// sqlitePath is the SQLite file the flags name, as store.Open reads them;
// on PostgreSQL it explains that pg_dump makes the backup.
func (d *dbFlags) sqlitePath() (string, error) {
	u := d.databaseURL
	switch {
	case u == "":
		return filepath.Join(d.dataDir, "luna.db"), nil
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return "", errors.New("the database is PostgreSQL: back it up with pg_dump, e.g. " +
			"pg_dump --format=custom --file luna.dump \"$LUNA_DATABASE_URL\" (restore with pg_restore)")
	}
	for _, prefix := range []string{"sqlite:", "file:"} {
		if path, ok := strings.CutPrefix(u, prefix); ok {
			path, _, _ = strings.Cut(path, "?")
			return path, nil
		}
	}
	return "", fmt.Errorf("unsupported database URL (want postgres://… or empty for SQLite)")
}

// backupSQLite writes a snapshot of db to path with VACUUM INTO: one read
// transaction, so the copy holds exactly the transactions committed before
// it started, while writers carry on (WAL). The copy goes to a temporary
// file beside path, is checked and synced, then takes path's name, so path
// is either absent, the old file or a whole new copy, never a part of one.
func backupSQLite(ctx context.Context, db *sql.DB, path string, force bool) (size int64, err error) {
	suffix := make([]byte, 6)
	rand.Read(suffix) // crypto/rand does not fail
	tmp := path + ".tmp-" + hex.EncodeToString(suffix)
	defer func() {
		if err != nil {
			os.Remove(tmp) // best effort: the error says what failed
		}
	}()
	if _, err := db.ExecContext(ctx, "VACUUM INTO $1", tmp); err != nil {
		return 0, fmt.Errorf("copy the database: %w", err)
	}
	if err := checkSQLiteFile(ctx, tmp); err != nil {
		return 0, err
	}
	// SQLite does not sync the file VACUUM INTO writes.
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	err = errors.Join(f.Chmod(0o600), f.Sync())
	info, statErr := f.Stat()
	if err = errors.Join(err, statErr, f.Close()); err != nil {
		return 0, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if force {
		err = os.Rename(tmp, path)
	} else if err = os.Link(tmp, path); err == nil {
		// A hard link never replaces a file that appeared meanwhile.
		err = os.Remove(tmp)
	} else if errors.Is(err, fs.ErrExist) {
		err = fmt.Errorf("%s exists; --force replaces it", path)
	} else if _, statErr := os.Lstat(path); errors.Is(statErr, fs.ErrNotExist) {
		// A file system without hard links.
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return 0, err
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		dir.Sync() // best effort: the file itself is synced
		dir.Close()
	}
	return info.Size(), nil
}

// checkSQLiteFile runs SQLite's quick integrity check on a database file.
func checkSQLiteFile(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var result string
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&result); err != nil {
		return fmt.Errorf("check the copy: %w", err)
	}
	if result != "ok" {
		return fmt.Errorf("check the copy: %s", result)
	}
	return nil
}
