package cursor

import (
	"fmt"

	"luna"
)

// MaxLimit is the largest page a client may ask for.
const MaxLimit = 100

// Limit checks a client's page size: 0 means def, anything else must be
// 1..MaxLimit (an invalid_request error otherwise).
func Limit(n, def int) (int, error) {
	switch {
	case n == 0:
		return def, nil
	case n < 1 || n > MaxLimit:
		return 0, luna.Errorf(luna.CodeInvalidRequest, "limit must be between 1 and %d.", MaxLimit)
	}
	return n, nil
}

// Keyset is one page of a list ordered by (column DESC, id DESC), newest
// first, whose rows' positions are Cursors (time and id).
type Keyset struct {
	Column string // the time column the list is ordered by (a constant, never input)
	Limit  int    // rows on the page, from Limit
	After  Cursor // the page starts after this row; zero for the first page
}

// NewKeyset checks a client's page (limit and cursor) for a list ordered
// by column, with def rows when the limit is 0.
func NewKeyset(column string, limit, def int, after string) (Keyset, error) {
	n, err := Limit(limit, def)
	if err != nil {
		return Keyset{}, err
	}
	k := Keyset{Column: column, Limit: n}
	if after != "" {
		if k.After, err = Parse(after); err != nil {
			return Keyset{}, err
		}
	}
	return k, nil
}

// SQL appends the page's condition and order to query, whose WHERE clause
// has taken args so far, and returns both. It asks for one row more than
// the limit, so that Next can tell whether another page follows.
func (k Keyset) SQL(query string, args []any) (string, []any) {
	if k.After != (Cursor{}) {
		n := len(args) + 1
		query += fmt.Sprintf(` AND (%[1]s < $%[2]d OR (%[1]s = $%[2]d AND id < $%[3]d))`, k.Column, n, n+1)
		args = append(args, k.After.At, k.After.ID)
	}
	return query + fmt.Sprintf(` ORDER BY %s DESC, id DESC LIMIT %d`, k.Column, k.Limit+1), args
}

// Next cuts rows read with one row more than limit to the page, and
// returns the cursor of the next page ("" at the end of the list); pos
// gives a row's position (a Cursor, or a Seq).
func Next[T any, P fmt.Stringer](rows []T, limit int, pos func(T) P) ([]T, string) {
	if len(rows) <= limit {
		return rows, ""
	}
	rows = rows[:limit]
	return rows, pos(rows[limit-1]).String()
}
