package chat

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"luna/internal/store"
	"luna/internal/store/storetest"
)

// The statements every send runs find their rows through an index, on
// both databases, however many replies of other users are running.
func TestSendQueriesUseIndexes(t *testing.T) {
	tests := []struct {
		name, query, index string
		args               []any
	}{
		{"running replies of a user", countRunningSQL, "messages_running_user", []any{"u1"}},
	}
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for _, tt := range tests {
			plan, err := queryPlan(ctx, db, tt.query, tt.args...)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if !strings.Contains(plan, tt.index) {
				t.Errorf("%s: plan does not use %s:\n%s", tt.name, tt.index, plan)
			}
		}
	})
}

// queryPlan returns the database's plan for query. PostgreSQL is told to
// avoid sequential scans, which it prefers on a table this small.
func queryPlan(ctx context.Context, db *store.DB, query string, args ...any) (string, error) {
	var lines []string
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		explain := "EXPLAIN QUERY PLAN "
		if db.Dialect == store.Postgres {
			if _, err := tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
				return err
			}
			explain = "EXPLAIN "
		}
		rows, err := tx.QueryContext(ctx, explain+query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			for i := range vals {
				vals[i] = new(sql.NullString)
			}
			if err := rows.Scan(vals...); err != nil {
				return err
			}
			for _, v := range vals {
				lines = append(lines, v.(*sql.NullString).String)
			}
		}
		return rows.Err()
	})
	return strings.Join(lines, "\n"), err
}
