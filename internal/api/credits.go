package api

import (
	"net/http"

	"luna/internal/credits"
)

// handleListCreditEntries is the user's usage history: their ledger
// entries, newest first, in cursor pages.
func (s *Server) handleListCreditEntries(w http.ResponseWriter, r *http.Request) {
	n, err := limit(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The cursor (a position in the ledger) is checked by ListEntries
	// before its query.
	list, next, err := s.ledger.ListEntries(r.Context(), userFrom(r.Context()).ID,
		credits.EntryPage{Limit: n, Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]credits.EntryJSON, 0, len(list))
	for _, e := range list {
		items = append(items, credits.EntryView(e))
	}
	writeJSON(w, http.StatusOK, listJSON[credits.EntryJSON]{Items: items, NextCursor: optionalCursor(next)})
}
