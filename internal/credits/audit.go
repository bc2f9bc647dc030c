package credits

import (
	"context"
	"fmt"
)

// Mismatch is one inconsistency found by Audit.
type Mismatch struct {
	UserID        string
	ReservationID string
	Problem       string
	Stored        int64
	Computed      int64
}

func (m Mismatch) String() string {
	subject := "user " + m.UserID
	if m.ReservationID != "" {
		subject += " reservation " + m.ReservationID
	}
	return fmt.Sprintf("%s: %s (stored %d, computed %d)", subject, m.Problem, m.Stored, m.Computed)
}

// AuditReport is the outcome of Audit. It is clean when Mismatches is empty.
type AuditReport struct {
	Users        int
	Reservations int
	Mismatches   []Mismatch
}

// Audit recomputes every user's balance and reserved credits from the
// ledger entries and checks them against the stored sums, the active
// reservations, each reservation's own entries (what it held, captured,
// charged beyond the hold, and could not charge), and each entry's shape.
func (l *Ledger) Audit(ctx context.Context) (AuditReport, error) {
	var report AuditReport
	rows, err := l.db.QueryContext(ctx, `
		SELECT u.id, u.credits_balance, u.credits_reserved,
		       COALESCE(e.balance, 0), COALESCE(e.reserved, 0), COALESCE(r.active, 0)
		FROM users u
		LEFT JOIN (SELECT user_id, CAST(SUM(balance_delta) AS BIGINT) AS balance,
		                  CAST(SUM(reserved_delta) AS BIGINT) AS reserved
		           FROM credit_entries GROUP BY user_id) e ON e.user_id = u.id
		LEFT JOIN (SELECT user_id, CAST(SUM(amount) AS BIGINT) AS active
		           FROM credit_reservations WHERE status = 'active' GROUP BY user_id) r ON r.user_id = u.id
		ORDER BY u.id`)
	if err != nil {
		return report, fmt.Errorf("audit users: %w", err)
	}
	for rows.Next() {
		var id string
		var balance, reserved, ledgerBalance, ledgerReserved, active int64
		if err := rows.Scan(&id, &balance, &reserved, &ledgerBalance, &ledgerReserved, &active); err != nil {
			rows.Close()
			return report, fmt.Errorf("audit users: %w", err)
		}
		report.Users++
		add := func(problem string, stored, computed int64) {
			if stored != computed {
				report.Mismatches = append(report.Mismatches, Mismatch{UserID: id, Problem: problem, Stored: stored, Computed: computed})
			}
		}
		add("balance differs from the sum of ledger entries", balance, ledgerBalance)
		add("reserved differs from the sum of ledger entries", reserved, ledgerReserved)
		add("reserved differs from the active reservations", reserved, active)
		if reserved < 0 || balance < reserved {
			report.Mismatches = append(report.Mismatches, Mismatch{UserID: id, Problem: "available credits below zero", Stored: balance - reserved})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return report, fmt.Errorf("audit users: %w", err)
	}

	rows, err = l.db.QueryContext(ctx, `
		SELECT r.id, r.user_id, r.status, r.amount, COALESCE(r.captured, 0), r.extra_charged, r.shortfall,
		       COALESCE(CAST(SUM(e.reserved_delta) AS BIGINT), 0), COALESCE(CAST(SUM(e.balance_delta) AS BIGINT), 0),
		       COALESCE(CAST(SUM(e.shortfall) AS BIGINT), 0)
		FROM credit_reservations r LEFT JOIN credit_entries e ON e.reservation_id = r.id
		GROUP BY r.id, r.user_id, r.status, r.amount, r.captured, r.extra_charged, r.shortfall
		ORDER BY r.id`)
	if err != nil {
		return report, fmt.Errorf("audit reservations: %w", err)
	}
	for rows.Next() {
		var id, userID, status string
		var amount, captured, extra, shortfall, reservedSum, balanceSum, shortfallSum int64
		if err := rows.Scan(&id, &userID, &status, &amount, &captured, &extra, &shortfall, &reservedSum, &balanceSum, &shortfallSum); err != nil {
			rows.Close()
			return report, fmt.Errorf("audit reservations: %w", err)
		}
		report.Reservations++
		add := func(problem string, stored, computed int64) {
			if stored != computed {
				report.Mismatches = append(report.Mismatches, Mismatch{UserID: userID, ReservationID: id,
					Problem: problem, Stored: stored, Computed: computed})
			}
		}
		wantReserved, wantSpent := int64(0), extra
		if status == StatusActive {
			wantReserved = amount
		}
		if status == StatusCaptured {
			wantSpent += captured
		}
		add("held amount differs from the reservation's status "+status, wantReserved, reservedSum)
		add("spent amount differs from the captured and charged amounts", wantSpent, -balanceSum)
		add("shortfall differs from its entries' shortfall", shortfall, shortfallSum)
		if status == StatusActive && extra+shortfall != 0 {
			add("an active hold was charged", 0, extra+shortfall)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return report, fmt.Errorf("audit reservations: %w", err)
	}

	// Every entry has its kind's shape: a grant adds, a reserve only holds,
	// a capture spends at most what it releases from the hold, a release
	// or an expiry only frees, a charge only spends and names its hold.
	rows, err = l.db.QueryContext(ctx, `
		SELECT id, user_id, kind, balance_delta, reserved_delta FROM credit_entries
		WHERE shortfall < 0
		   OR (kind = 'grant' AND NOT (balance_delta > 0 AND reserved_delta = 0))
		   OR (kind = 'adjust' AND NOT (balance_delta <> 0 AND reserved_delta = 0))
		   OR (kind = 'reserve' AND NOT (balance_delta = 0 AND reserved_delta > 0 AND reservation_id IS NOT NULL))
		   OR (kind = 'capture' AND NOT (balance_delta <= 0 AND reserved_delta < 0 AND balance_delta >= reserved_delta AND reservation_id IS NOT NULL))
		   OR (kind IN ('release', 'expire') AND NOT (balance_delta = 0 AND reserved_delta < 0 AND reservation_id IS NOT NULL))
		   OR (kind = 'charge' AND NOT (balance_delta <= 0 AND reserved_delta = 0 AND reservation_id IS NOT NULL))
		   OR (kind <> 'charge' AND shortfall <> 0)
		ORDER BY id`)
	if err != nil {
		return report, fmt.Errorf("audit entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, balance, reserved int64
		var userID, kind string
		if err := rows.Scan(&id, &userID, &kind, &balance, &reserved); err != nil {
			return report, fmt.Errorf("audit entries: %w", err)
		}
		report.Mismatches = append(report.Mismatches, Mismatch{UserID: userID,
			Problem: fmt.Sprintf("entry %d is not a valid %s (balance delta %d, reserved delta %d)", id, kind, balance, reserved)})
	}
	if err := rows.Err(); err != nil {
		return report, fmt.Errorf("audit entries: %w", err)
	}
	return report, nil
}
