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
// reservations, and each reservation's own entries.
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
		SELECT r.id, r.user_id, r.status, r.amount, COALESCE(r.captured, 0),
		       COALESCE(CAST(SUM(e.reserved_delta) AS BIGINT), 0), COALESCE(CAST(SUM(e.balance_delta) AS BIGINT), 0)
		FROM credit_reservations r LEFT JOIN credit_entries e ON e.reservation_id = r.id
		GROUP BY r.id, r.user_id, r.status, r.amount, r.captured
		ORDER BY r.id`)
	if err != nil {
		return report, fmt.Errorf("audit reservations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, userID, status string
		var amount, captured, reservedSum, balanceSum int64
		if err := rows.Scan(&id, &userID, &status, &amount, &captured, &reservedSum, &balanceSum); err != nil {
			return report, fmt.Errorf("audit reservations: %w", err)
		}
		report.Reservations++
		wantReserved, wantSpent := int64(0), int64(0)
		if status == StatusActive {
			wantReserved = amount
		}
		if status == StatusCaptured {
			wantSpent = captured
		}
		if reservedSum != wantReserved {
			report.Mismatches = append(report.Mismatches, Mismatch{UserID: userID, ReservationID: id,
				Problem: "held amount differs from the reservation's status " + status, Stored: wantReserved, Computed: reservedSum})
		}
		if -balanceSum != wantSpent {
			report.Mismatches = append(report.Mismatches, Mismatch{UserID: userID, ReservationID: id,
				Problem: "spent amount differs from the captured amount", Stored: wantSpent, Computed: -balanceSum})
		}
	}
	if err := rows.Err(); err != nil {
		return report, fmt.Errorf("audit reservations: %w", err)
	}
	return report, nil
}
