package cursor_test

import (
	"slices"
	"testing"

	"luna"
	"luna/internal/cursor"
)

func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		n, want int
		invalid bool
	}{
		{n: 0, want: 30}, {n: 1, want: 1}, {n: 100, want: 100},
		{n: -1, invalid: true}, {n: 101, invalid: true},
	} {
		got, err := cursor.Limit(tc.n, 30)
		if tc.invalid {
			if luna.ErrorCode(err) != luna.CodeInvalidRequest {
				t.Errorf("Limit(%d) = %d, %v; want invalid_request", tc.n, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Limit(%d) = %d, %v; want %d", tc.n, got, err, tc.want)
		}
	}
}

func TestKeysetSQL(t *testing.T) {
	first, err := cursor.NewKeyset("created_at", 0, 50, "")
	if err != nil {
		t.Fatal(err)
	}
	query, args := first.SQL(`SELECT id FROM t WHERE user_id = $1`, []any{"u"})
	if want := `SELECT id FROM t WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 51`; query != want || len(args) != 1 {
		t.Errorf("first page: %q %v; want %q [u]", query, args, want)
	}
	after := cursor.Cursor{At: 7, ID: "42"}
	next, err := cursor.NewKeyset("updated_at", 2, 50, after.String())
	if err != nil {
		t.Fatal(err)
	}
	query, args = next.SQL(`SELECT id FROM t WHERE user_id = $1`, []any{"u"})
	want := `SELECT id FROM t WHERE user_id = $1 AND (updated_at < $2 OR (updated_at = $2 AND id < $3)) ORDER BY updated_at DESC, id DESC LIMIT 3`
	if query != want || !slices.Equal(args, []any{"u", int64(7), "42"}) {
		t.Errorf("next page: %q %v; want %q [u 7 42]", query, args, want)
	}
	for _, bad := range []struct {
		limit  int
		cursor string
	}{{101, ""}, {-1, ""}, {0, "garbage!"}} {
		if _, err := cursor.NewKeyset("created_at", bad.limit, 50, bad.cursor); luna.ErrorCode(err) != luna.CodeInvalidRequest {
			t.Errorf("NewKeyset(%d, %q) = %v; want invalid_request", bad.limit, bad.cursor, err)
		}
	}
}

func TestNext(t *testing.T) {
	pos := func(n int) cursor.Seq { return cursor.Seq(n) }
	for _, tc := range []struct {
		rows     []int
		limit    int
		wantRows []int
		wantNext string
	}{
		{rows: nil, limit: 2},
		{rows: []int{9, 8}, limit: 2, wantRows: []int{9, 8}},
		{rows: []int{9, 8, 7}, limit: 2, wantRows: []int{9, 8}, wantNext: cursor.Seq(8).String()},
	} {
		rows, next := cursor.Next(tc.rows, tc.limit, pos)
		if !slices.Equal(rows, tc.wantRows) || next != tc.wantNext {
			t.Errorf("Next(%v, %d) = %v, %q; want %v, %q", tc.rows, tc.limit, rows, next, tc.wantRows, tc.wantNext)
		}
	}
}
