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

// Parse decodes a cursor from a client; a malformed one is an
// invalid_request error.
func Parse(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		at, id, ok := strings.Cut(string(raw), "|")
		if n, perr := strconv.ParseInt(at, 10, 64); ok && perr == nil && id != "" {
			return Cursor{At: n, ID: id}, nil
		}
	}
	return Cursor{}, luna.Errorf(luna.CodeInvalidRequest, "Invalid cursor.")
}
