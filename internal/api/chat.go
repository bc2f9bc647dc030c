package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"luna"
	"luna/internal/chat"
	"luna/internal/cursor"
	"luna/internal/events"
)

// page reads limit and cursor from the query string.
func page(r *http.Request) (chat.Page, error) {
	p := chat.Page{Cursor: r.URL.Query().Get("cursor")}
	if p.Cursor != "" {
		// Checked here, before any query: only a time and a UUID go on.
		if _, err := cursor.Parse(p.Cursor); err != nil {
			return p, err
		}
	}
	var err error
	p.Limit, err = limit(r)
	return p, err
}

// limit reads the page size from the query string (0 when absent).
func limit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		return 0, errorf(luna.CodeInvalidRequest, "limit must be a number between 1 and 100.")
	}
	return n, nil
}

func optionalCursor(next string) *string {
	if next == "" {
		return nil
	}
	return &next
}

func (s *Server) handleCreateConversation(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ModelID string `json:"modelId"`
		Title   string `json:"title"`
	}
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := s.chat.CreateConversation(r.Context(), userFrom(r.Context()).ID, req.ModelID, req.Title)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, chat.ConversationEvent(c))
}

func (s *Server) handleListConversations(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, next, err := s.chat.ListConversations(r.Context(), userFrom(r.Context()).ID, p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]chat.ConversationJSON, 0, len(list))
	for _, c := range list {
		items = append(items, chat.ConversationEvent(c))
	}
	writeJSON(w, http.StatusOK, listJSON[chat.ConversationJSON]{Items: items, NextCursor: optionalCursor(next)})
}

type conversationWithMessages struct {
	chat.ConversationJSON
	Messages listJSON[chat.MessageJSON] `json:"messages"`
}

func (s *Server) handleGetConversation(w http.ResponseWriter, r *http.Request) {
	userID := userFrom(r.Context()).ID
	c, err := s.chat.GetConversation(r.Context(), userID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeConversationWithMessages(w, r, userID, c)
}

// writeConversationWithMessages answers with a conversation and the first
// page of the messages it shows.
func (s *Server) writeConversationWithMessages(w http.ResponseWriter, r *http.Request, userID string, c chat.Conversation) {
	msgs, next, err := s.chat.ListMessages(r.Context(), userID, c.ID, chat.Page{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, conversationWithMessages{ConversationJSON: chat.ConversationEvent(c),
		Messages: listJSON[chat.MessageJSON]{Items: messageViews(msgs), NextCursor: optionalCursor(next)}})
}

func messageViews(msgs []chat.Message) []chat.MessageJSON {
	items := make([]chat.MessageJSON, 0, len(msgs))
	for _, m := range msgs {
		items = append(items, chat.MessageView(m))
	}
	return items
}

func (s *Server) handleRenameConversation(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Title *string `json:"title"`
	}
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Title == nil {
		s.writeError(w, r, errorf(luna.CodeInvalidRequest, "title is required."))
		return
	}
	c, err := s.chat.RenameConversation(r.Context(), userFrom(r.Context()).ID, r.PathValue("id"), *req.Title)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, chat.ConversationEvent(c))
}

func (s *Server) handleListMessages(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	msgs, next, err := s.chat.ListMessages(r.Context(), userFrom(r.Context()).ID, r.PathValue("id"), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, listJSON[chat.MessageJSON]{Items: messageViews(msgs), NextCursor: optionalCursor(next)})
}

func (s *Server) handleSendMessage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Content         string `json:"content"`
		ClientMessageID string `json:"clientMessageId"`
	}
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	userMsg, reply, err := s.chat.Send(r.Context(), chat.SendRequest{
		UserID: userFrom(r.Context()).ID, ConversationID: r.PathValue("id"),
		Content: req.Content, ClientMessageID: req.ClientMessageID, RateLimit: s.userRate(r),
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]chat.MessageJSON{
		"userMessage": chat.MessageView(userMsg), "assistantMessage": chat.MessageView(reply),
	})
}

func (s *Server) handleGetMessage(w http.ResponseWriter, r *http.Request) {
	m, err := s.chat.GetMessage(r.Context(), userFrom(r.Context()).ID, r.PathValue("id"))
	if err == nil {
		m, err = s.chat.WithVersion(r.Context(), m)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, chat.MessageView(m))
}

func (s *Server) handleCancelMessage(w http.ResponseWriter, r *http.Request) {
	m, err := s.chat.Cancel(r.Context(), userFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, chat.MessageView(m))
}

// streamDone is the data of a stream's done and error events.
type streamDone struct {
	Status           string          `json:"status"`
	Usage            usageJSON       `json:"usage"`
	CreditsCharged   int64           `json:"creditsCharged"`
	CreditsShortfall int64           `json:"creditsShortfall"`
	FinishReason     string          `json:"finishReason"`
	Error            *chat.ErrorJSON `json:"error"`
}

type usageJSON struct {
	PromptTokens     int `json:"promptTokens"`
	CompletionTokens int `json:"completionTokens"`
}

func (s *Server) handleMessageStream(w http.ResponseWriter, r *http.Request) {
	userID, messageID := userFrom(r.Context()).ID, r.PathValue("id")
	ctx, cancel := s.streamContext(r)
	defer cancel()
	sw := newSSEWriter(w)
	lastEventID := r.Header.Get("Last-Event-ID")
	if lastEventID == "" {
		lastEventID = r.URL.Query().Get("lastEventId") // for clients that cannot set headers
	}
	err := s.chat.Follow(ctx, userID, messageID, lastEventID, func(ev chat.StreamEvent) error {
		switch ev.Kind {
		case chat.EventSnapshot:
			return sw.textEvent("snapshot", ev.Offset, "content", ev.Text)
		case chat.EventDelta:
			return sw.textEvent("delta", ev.Offset, "text", ev.Text)
		case chat.EventHeartbeat:
			return sw.comment("heartbeat")
		case chat.EventDeleted:
			return sw.textEvent("deleted", ev.Offset, "messageId", messageID)
		default:
			id := strconv.Itoa(ev.Offset)
			m := ev.Message
			done := streamDone{Status: m.Status, Usage: usageJSON{m.PromptTokens, m.CompletionTokens},
				CreditsCharged: m.CreditsCharged, CreditsShortfall: m.CreditsShortfall, FinishReason: m.FinishReason}
			if m.ErrorCode != "" || m.ErrorMessage != "" {
				done.Error = &chat.ErrorJSON{Code: m.ErrorCode, Message: m.ErrorMessage}
			}
			return sw.event(ev.Kind, id, done)
		}
	})
	switch {
	case err != nil && !sw.started:
		s.writeError(w, r, err) // not found (another user's message answers the same)
	case err != nil && ctx.Err() == nil:
		s.logger.DebugContext(r.Context(), "message stream ended", "message_id", messageID, "err", err)
	}
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	userID := userFrom(r.Context()).ID
	sub := s.bus.SubscribeUser(userID)
	defer sub.Close()
	ctx, cancel := s.streamContext(r)
	defer cancel()
	sw, err := startSSE(w)
	if err != nil {
		return
	}
	// Start with the balance, so a client can render it at once.
	if c, err := s.ledger.Balance(ctx, userID); err == nil {
		if sw.event(events.CreditsUpdated, "", c) != nil {
			return
		}
	}
	heartbeat := time.NewTicker(s.heartbeatEvery)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Lagged:
			sw.event("resync", "", map[string]string{"reason": "too many events; reload your data"}) // closing anyway
			return
		case change := <-sub.C:
			data, found, err := s.changed(ctx, userID, change)
			if err != nil {
				if ctx.Err() == nil {
					s.logger.ErrorContext(ctx, "read a change for /v1/events", "type", change.Type, "id", change.ID, "err", err)
					sw.event("resync", "", map[string]string{"reason": "an event could not be read; reload your data"}) // closing anyway
				}
				return
			}
			if found && sw.event(change.Type, "", data) != nil {
				return
			}
		case <-heartbeat.C:
			if sw.comment("heartbeat") != nil {
				return
			}
		}
	}
}

func (s *Server) handleDeleteConversation(w http.ResponseWriter, r *http.Request) {
	if err := s.chat.DeleteConversation(r.Context(), userFrom(r.Context()).ID, r.PathValue("id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// changed reads the current state of what a change is about, as its
// event's data: notifications carry ids only. found is false when it is
// no longer there, or of a kind this instance does not know (nothing to
// send).
func (s *Server) changed(ctx context.Context, userID string, c events.Change) (data any, found bool, err error) {
	data, err = s.readChange(ctx, userID, c)
	switch {
	case errors.Is(err, errUnknownChange):
		s.logger.WarnContext(ctx, "skipped an event of an unknown type", "type", c.Type)
		return nil, false, nil
	case luna.ErrorCode(err) == luna.CodeNotFound:
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return data, true, nil
}

var errUnknownChange = errors.New("unknown event type")

func (s *Server) readChange(ctx context.Context, userID string, c events.Change) (any, error) {
	switch c.Type {
	case events.ConversationCreated, events.ConversationUpdated:
		conv, err := s.chat.GetConversation(ctx, userID, c.ID)
		return chat.ConversationEvent(conv), err
	case events.ConversationDeleted:
		return chat.ConversationDeletedJSON{ID: c.ID}, nil // nothing left to read
	case events.MessageCreated, events.MessageUpdated:
		m, err := s.chat.GetMessage(ctx, userID, c.ID)
		if err == nil {
			m, err = s.chat.WithVersion(ctx, m)
		}
		return chat.MessageEvent(m), err
	case events.ImageUpdated:
		j, err := s.images.Get(ctx, userID, c.ID)
		if err != nil {
			return nil, err
		}
		return s.images.View(ctx, j)
	case events.CreditsUpdated:
		return s.ledger.Balance(ctx, userID)
	}
	return nil, errUnknownChange
}
