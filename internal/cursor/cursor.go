// Package cursor encodes positions in lists ordered by (time, id), the
// opaque nextCursor values of the API's paginated lists.
package cursor

import (
	"encoding/base64"
	"strconv"
	"strings"

	"luna"
)

// Cursor is a position after (or before) the row with this time and id.
type Cursor struct {
	At int64 // Unix milliseconds
	ID string
}

// String encodes the cursor for clients.
func (c Cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.At, 10) + "|" + c.ID))
}

// validID reports whether a cursor's id is one a list can have: a UUID,
// or a number (ledger entries), so that nothing else reaches a query.
func validID(id string) bool {
	if luna.ValidID(id) {
		return true
	}
	if id == "" || len(id) > 19 {
		return false
	}
	for _, c := range []byte(id) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// maxLength bounds a cursor: a time and a UUID take far less.
const maxLength = 128

// Parse decodes a cursor from a client; a malformed one (not base64, no
// time, an id that is neither a UUID nor a number) is an invalid_request
// error, so that nothing else reaches a query.
func Parse(s string) (Cursor, error) {
	if len(s) > maxLength {
		return Cursor{}, luna.Errorf(luna.CodeInvalidRequest, "Invalid cursor.")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		at, id, ok := strings.Cut(string(raw), "|")
		if n, perr := strconv.ParseInt(at, 10, 64); ok && perr == nil && validID(id) {
			return Cursor{At: n, ID: id}, nil
		}
	}
	return Cursor{}, luna.Errorf(luna.CodeInvalidRequest, "Invalid cursor.")
}

// Seq is a position in a list ordered by an ever-growing number (the
// credit ledger's entry ids): the next page starts below it.
type Seq int64

// seqPrefix keeps Seq cursors apart from time-and-id ones.
const seqPrefix = "seq:"

// String encodes the position for clients.
func (s Seq) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(seqPrefix + strconv.FormatInt(int64(s), 10)))
}

// ParseSeq decodes a Seq cursor from a client; a malformed one is an
// invalid_request error.
func ParseSeq(s string) (Seq, error) {
	if len(s) <= maxLength {
		if raw, err := base64.RawURLEncoding.DecodeString(s); err == nil {
			if digits, ok := strings.CutPrefix(string(raw), seqPrefix); ok {
				if n, err := strconv.ParseInt(digits, 10, 64); err == nil && n > 0 {
					return Seq(n), nil
				}
			}
		}
	}
	return 0, luna.Errorf(luna.CodeInvalidRequest, "Invalid cursor.")
}
