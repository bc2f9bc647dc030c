package storetest

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	"luna/internal/store"
)

// URL's PostgreSQL databases are clones of the migrated template (Luna's
// and River's tables present, nothing left to apply); EmptyURL's are empty.
func TestURLIsMigratedEmptyURLIsNot(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, URL(t, store.Postgres), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if applied, err := db.Migrate(ctx); err != nil || applied != 0 {
		t.Fatalf("migrating a clone applied %d, %v; want 0", applied, err)
	}
	if !hasTable(t, db.DB, "river_job") || !hasTable(t, db.DB, "users") {
		t.Fatal("the clone lacks River's or Luna's tables")
	}

	empty, err := store.Open(ctx, EmptyURL(t, store.Postgres), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if hasTable(t, empty.DB, "users") {
		t.Fatal("EmptyURL's database has tables")
	}
}

// Test processes building the same template at once take turns: one
// builds it, the others find it, and every clone of it is migrated.
func TestConcurrentTemplateBuilds(t *testing.T) {
	admin := postgresAdminURL(t)
	name := "luna_tmpl_test_" + randomHex(4)
	adminDB, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer adminDB.Close()
	t.Cleanup(func() {
		adminDB.Exec("ALTER DATABASE " + name + " WITH IS_TEMPLATE false")
		adminDB.Exec("DROP DATABASE IF EXISTS " + name)
	})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- ensureTemplate(context.Background(), admin, name)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("ensureTemplate: %v", err)
		}
	}
	var scratchLeft bool
	if err := adminDB.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name+"_build").Scan(&scratchLeft); err != nil || scratchLeft {
		t.Fatalf("scratch database left: %v, %v", scratchLeft, err)
	}
	// Clones made at once.
	clones := []string{name + "_c0", name + "_c1", name + "_c2"}
	t.Cleanup(func() {
		for _, c := range clones {
			adminDB.Exec("DROP DATABASE IF EXISTS " + c + " WITH (FORCE)")
		}
	})
	cloneErrs := make(chan error, len(clones))
	for _, c := range clones {
		go func() {
			_, err := adminDB.Exec("CREATE DATABASE " + c + " TEMPLATE " + name)
			cloneErrs <- err
		}()
	}
	for range clones {
		if err := <-cloneErrs; err != nil {
			t.Fatalf("clone: %v", err)
		}
	}
	for _, c := range clones {
		u, err := databaseURL(admin, c)
		if err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(context.Background(), u, "")
		if err != nil {
			t.Fatal(err)
		}
		ok := hasTable(t, db.DB, "credit_entries")
		db.Close()
		if !ok {
			t.Fatalf("clone %s lacks Luna's tables", c)
		}
	}
}

func hasTable(t *testing.T, db *sql.DB, table string) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRow(`SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}
