package api

import (
	"net/http"

	"luna"
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
	var conversations []string
	for _, e := range list {
		v := credits.EntryView(e)
		if id := v.For.ConversationID; id != nil && luna.ValidID(*id) {
			conversations = append(conversations, *id)
		}
		items = append(items, v)
	}
	// Name each reply's conversation as it is now (none once deleted).
	titles, err := s.chat.ConversationTitles(r.Context(), userFrom(r.Context()).ID, conversations)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for i := range items {
		if id := items[i].For.ConversationID; id != nil {
			if title, ok := titles[*id]; ok {
				items[i].For.ConversationTitle = &title
			}
		}
	}
	writeJSON(w, http.StatusOK, listJSON[credits.EntryJSON]{Items: items, NextCursor: optionalCursor(next)})
}
