package luna

import "github.com/google/uuid"

// ValidID reports whether s can be the id of a conversation, message or
// image: every such id is a UUID in its canonical 36-character text form.
// Ids from clients are checked with it before any query, so that bytes a
// database refuses (invalid UTF-8, NUL) or absurd lengths never reach one.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}
