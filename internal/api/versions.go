package api

import (
	"net/http"

	"luna"
	"luna/internal/chat"
)

// actionResult is the answer to a per-message action: the reply being
// generated and, for an edit, the new question (null otherwise).
type actionResult struct {
	UserMessage      *chat.MessageJSON `json:"userMessage"`
	AssistantMessage chat.MessageJSON  `json:"assistantMessage"`
}

// handleMessageAction serves regenerate, continue and edit.
func (s *Server) handleMessageAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Content         string `json:"content"`
			ClientRequestID string `json:"clientRequestId"`
		}
		if err := s.decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		if action != chat.ActionEdit && req.Content != "" {
			s.writeError(w, r, errorf(luna.CodeInvalidRequest, "content is only for edit."))
			return
		}
		res, err := s.chat.Act(r.Context(), chat.ActionRequest{
			UserID: userFrom(r.Context()).ID, MessageID: r.PathValue("id"), Action: action,
			Content: req.Content, ClientRequestID: req.ClientRequestID, RateLimit: s.userRate(r),
		})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out := actionResult{AssistantMessage: chat.MessageView(res.Reply)}
		if res.UserMessage != nil {
			v := chat.MessageView(*res.UserMessage)
			out.UserMessage = &v
		}
		status := http.StatusCreated
		if action == chat.ActionContinue {
			status = http.StatusOK // the same message goes on
		}
		writeJSON(w, status, out)
	}
}

func (s *Server) handleSelectVersion(w http.ResponseWriter, r *http.Request) {
	userID := userFrom(r.Context()).ID
	c, err := s.chat.SelectVersion(r.Context(), userID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeConversationWithMessages(w, r, userID, c)
}

// estimateJSON is what sending a draft would hold.
type estimateJSON struct {
	ModelID          string `json:"modelId"`
	PromptTokens     int    `json:"promptTokens"`
	MaxTokens        int    `json:"maxTokens"`
	Credits          int64  `json:"credits"`
	CreditsAvailable int64  `json:"creditsAvailable"`
	CreditsNeeded    int64  `json:"creditsNeeded"`
	Capped           bool   `json:"capped"`
	Enough           bool   `json:"enough"`
}

func (s *Server) handleEstimate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ConversationID string `json:"conversationId"`
		ModelID        string `json:"modelId"`
		Content        string `json:"content"`
	}
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.ConversationID != "" && !luna.ValidID(req.ConversationID) {
		s.writeError(w, r, chat.ErrConversationNotFound)
		return
	}
	est, err := s.chat.Estimate(r.Context(), chat.EstimateRequest{
		UserID: userFrom(r.Context()).ID, ConversationID: req.ConversationID, ModelID: req.ModelID, Content: req.Content,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, estimateJSON{ModelID: est.ModelID, PromptTokens: est.PromptTokens, MaxTokens: est.MaxTokens,
		Credits: est.Hold, CreditsAvailable: est.Available, CreditsNeeded: est.Needed, Capped: est.Capped, Enough: est.Enough})
}
