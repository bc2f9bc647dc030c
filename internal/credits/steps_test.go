package credits_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"luna/internal/credits"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// ReserveSteps and SettleSteps write, in one statement, exactly what
// ReserveTx and SettleTx write step by step (the same holds, entries and
// balances, ids aside), and nothing at all where they do not apply: a cost
// beyond the hold, a hold no longer active. (PostgreSQL: the steps are
// data-modifying CTEs, which SQLite does not have.)
func TestStepsWriteWhatTheTransactionsWrite(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, store.Postgres)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := credits.NewLedger(db, credits.WithClock(func() time.Time { return now }))

	cases := []struct {
		name         string
		hold, cost   int64
		voidFirst    bool // release the hold before settling it
		stepsSettles bool
	}{
		{"released at no cost", 100, 0, false, true},
		{"captured in part", 100, 40, false, true},
		{"captured whole", 100, 100, false, true},
		{"cost beyond the hold", 100, 150, false, false},
		{"hold voided meanwhile", 100, 40, true, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			byTx, bySteps := newUser(t, db, fmt.Sprintf("tx%d", i)), newUser(t, db, fmt.Sprintf("steps%d", i))
			grant(t, l, byTx, 1000)
			grant(t, l, bySteps, 1000)
			req := func(user string) credits.ReserveRequest {
				return credits.ReserveRequest{UserID: user, Amount: c.hold, TTL: time.Hour, IdempotencyKey: "reply:" + user,
					Reference: "message:conv/" + user}
			}

			var txHold string
			inTx(t, db, func(tx *sql.Tx) error {
				r, err := l.ReserveTx(ctx, tx, req(byTx))
				txHold = r.ID
				return err
			})
			var args store.Args
			steps := l.ReserveSteps(&args, req(bySteps), "TRUE")
			inTx(t, db, func(tx *sql.Tx) error {
				var id string
				return tx.QueryRowContext(ctx, `WITH `+steps.Clauses+` SELECT id FROM reserve_hold`, args.Values()...).Scan(&id)
			})
			wantSameLedger(t, db, byTx, txHold, bySteps, steps.HoldID)

			if c.voidFirst {
				for _, id := range []string{txHold, steps.HoldID} {
					if _, err := l.Release(ctx, credits.ReleaseRequest{ReservationID: id}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, err := l.Settle(ctx, credits.SettleRequest{ReservationID: txHold, Cost: c.cost}); err != nil {
				t.Fatal(err)
			}
			args = store.Args{}
			settle := l.SettleSteps(&args, steps.HoldID, c.cost, "gate")
			var done bool
			err := db.QueryRowContext(ctx, `WITH `+settle.Lock+`, gate AS (SELECT id FROM settle_hold), `+settle.Settle+`
				SELECT `+settle.Done, args.Values()...).Scan(&done)
			if err != nil {
				t.Fatal(err)
			}
			if done != c.stepsSettles {
				t.Fatalf("steps settled: %v, want %v", done, c.stepsSettles)
			}
			if !done { // written nothing: settle the general way, as chat does
				if _, err := l.Settle(ctx, credits.SettleRequest{ReservationID: steps.HoldID, Cost: c.cost}); err != nil {
					t.Fatal(err)
				}
			}
			wantSameLedger(t, db, byTx, txHold, bySteps, steps.HoldID)
		})
	}
	wantCleanAudit(t, l)
}

func inTx(t *testing.T, db *store.DB, fn func(tx *sql.Tx) error) {
	t.Helper()
	if err := db.InTx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// wantSameLedger compares two users' credits, holds and entries, with
// each one's user and hold ids written as placeholders.
func wantSameLedger(t *testing.T, db *store.DB, userA, holdA, userB, holdB string) {
	t.Helper()
	a, b := ledgerRows(t, db, userA, holdA), ledgerRows(t, db, userB, holdB)
	if a != b {
		t.Fatalf("step by step:\n%s\nin one statement:\n%s", a, b)
	}
}

func ledgerRows(t *testing.T, db *store.DB, user, hold string) string {
	t.Helper()
	ctx := context.Background()
	var out strings.Builder
	dump := func(query string) {
		rows, err := db.QueryContext(ctx, query, user)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		for rows.Next() {
			values := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range values {
				ptrs[i] = &values[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&out, values...)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	dump(`SELECT credits_balance, credits_reserved FROM users WHERE id = $1`)
	dump(`SELECT amount, captured, extra_charged, shortfall, status, reference, expires_at, created_at, settled_at
		FROM credit_reservations WHERE user_id = $1 ORDER BY created_at, status`)
	dump(`SELECT kind, balance_delta, reserved_delta, reservation_id, idempotency_key, fingerprint, reference, note, shortfall, created_at
		FROM credit_entries WHERE user_id = $1 AND kind <> 'grant' ORDER BY id`) // grants have random keys
	return strings.NewReplacer(hold, "<hold>", user, "<user>").Replace(out.String())
}
