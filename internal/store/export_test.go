package store

import "context"

// MigrateUpTo applies the migrations up to version, for tests of a
// migration's effect on existing data.
func (db *DB) MigrateUpTo(ctx context.Context, version int64) error {
	provider, err := db.migrationProvider()
	if err != nil {
		return err
	}
	_, err = provider.UpTo(ctx, version)
	return err
}
