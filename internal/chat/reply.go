package chat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"luna"
	"luna/internal/credits"
	"luna/internal/llm"
	"luna/internal/models"
)

// replyPlan is a reply ready to be held for and started: its prompt fitted
// into the model's context, and its output budget before the balance caps
// it. Sending, regenerating, editing, continuing and the price estimate all
// plan a reply this way, so the estimate is what a send would hold.
type replyPlan struct {
	model     models.Model
	history   []Message // what the prompt was fitted from (a context-length retry fits fewer)
	prompt    []llm.Message
	count     llm.PromptCount
	maxTokens int
	// continuing makes the model continue the last message (an
	// assistant's) instead of answering it.
	continuing bool
}

// planReply fits history (oldest first; its last message is the question,
// or the reply to continue) into model's context. A last message that does
// not fit with room for a short reply is refused (400).
func (s *Service) planReply(ctx context.Context, model models.Model, history []Message, continuing bool) (replyPlan, error) {
	prompt, count := buildPrompt(model, history, 0, s.promptCounter(ctx, model, continuing))
	if count.Tokens+s.cfg.MinReplyTokens > model.ContextTokens {
		if continuing {
			return replyPlan{}, luna.Errorf(luna.CodeInvalidRequest, "The reply is too long to continue within this model's context window.")
		}
		return replyPlan{}, luna.Errorf(luna.CodeInvalidRequest, "The message is too long for this model's context window.")
	}
	return replyPlan{
		model: model, history: history, prompt: prompt, count: count, continuing: continuing,
		maxTokens: min(model.MaxOutputTokens, model.ContextTokens-count.Tokens),
	}, nil
}

// budget caps the reply's output to what available credits afford rather
// than refusing; it refuses only when not even MinReplyTokens fit (a
// *credits.InsufficientError: the need is its prompt and a short answer).
// It returns the reply's max_tokens and the hold.
func (s *Service) budget(p replyPlan, available int64) (maxTokens int, hold int64, err error) {
	affordable := p.model.TokensAffordable(available) - int64(p.count.Tokens)
	maxTokens = int(min(int64(p.maxTokens), max(affordable, 0)))
	if maxTokens < s.cfg.MinReplyTokens {
		return 0, 0, &credits.InsufficientError{
			Needed: p.model.Cost(int64(p.count.Tokens + s.cfg.MinReplyTokens)), Available: max(available, 0),
		}
	}
	return maxTokens, p.model.Cost(int64(p.count.Tokens + maxTokens)), nil
}

// countRunningSQL counts a user's running replies (index
// messages_running_user).
const countRunningSQL = `SELECT COUNT(*) FROM messages WHERE user_id = $1 AND status IN ('pending', 'streaming')`

// holdReply, inside the transaction that stores the reply (after the user's
// row is locked and its credits read: balance), refuses a reply beyond the user's running limit (429),
// caps it to the balance and reserves what it can cost at most. holdKey is
// the hold's idempotency key.
func (s *Service) holdReply(ctx context.Context, tx *sql.Tx, userID string, balance luna.Credits, conversationID, replyID, holdKey string, p replyPlan) (maxTokens int, holdID string, err error) {
	var running int
	if err := tx.QueryRowContext(ctx, countRunningSQL, userID).Scan(&running); err != nil {
		return 0, "", fmt.Errorf("count running replies: %w", err)
	}
	if running >= s.cfg.MaxRunningPerUser {
		return 0, "", ErrTooManyRunning
	}
	maxTokens, amount, err := s.budget(p, balance.Available)
	if err != nil {
		return 0, "", err
	}
	if amount == 0 {
		return maxTokens, "", nil // a free model places no hold (and charges nothing)
	}
	hold, err := s.ledger.ReserveTx(ctx, tx, credits.ReserveRequest{
		UserID: userID, Amount: amount, TTL: s.cfg.ReservationTTL,
		IdempotencyKey: holdKey, Reference: credits.MessageReference(conversationID, replyID),
	})
	if err != nil {
		return 0, "", err
	}
	return maxTokens, hold.ID, nil
}

// Estimate is what a reply to a draft would hold, as sending it now would
// decide.
type Estimate struct {
	ModelID      string
	PromptTokens int   // the prompt, as counted for the hold
	MaxTokens    int   // the reply's output budget after the balance cap (0 when refused)
	Hold         int64 // credits held when sending (0 when refused)
	Available    int64 // the user's available credits
	Capped       bool  // the balance lowers the reply's output budget
	Enough       bool  // false: sending would be refused with 402
	Needed       int64 // credits a send needs at least (its prompt and a short answer)
}

// EstimateRequest names a conversation (its model and shown history) or, for
// a conversation not created yet, a model; and the draft.
type EstimateRequest struct {
	UserID         string
	ConversationID string
	ModelID        string
	Content        string
}

// Estimate returns what sending the draft would hold, from the same
// planning and balance cap as Send.
func (s *Service) Estimate(ctx context.Context, req EstimateRequest) (Estimate, error) {
	content, err := checkContent(req.Content, true)
	if err != nil {
		return Estimate{}, err
	}
	var history []Message
	modelID := req.ModelID
	switch {
	case req.ConversationID != "" && req.ModelID != "":
		return Estimate{}, luna.Errorf(luna.CodeInvalidRequest, "Give conversationId or modelId, not both.")
	case req.ConversationID != "":
		conv, err := s.GetConversation(ctx, req.UserID, req.ConversationID)
		if err != nil {
			return Estimate{}, err
		}
		modelID = conv.ModelID
		if history, err = pathTo(ctx, s.db, conv.LeafMessageID, historyLimit, true); err != nil {
			return Estimate{}, err
		}
	case req.ModelID == "":
		return Estimate{}, luna.Errorf(luna.CodeInvalidRequest, "conversationId or modelId is required.")
	}
	model, err := s.activeModel(ctx, modelID, req.ConversationID == "")
	if err != nil {
		return Estimate{}, err
	}
	history = append(history, Message{Role: "user", Content: content})
	p, err := s.planReply(ctx, model, history, false)
	if err != nil {
		return Estimate{}, err
	}
	balance, err := s.ledger.Balance(ctx, req.UserID)
	if err != nil {
		return Estimate{}, err
	}
	est := Estimate{ModelID: model.ID, PromptTokens: p.count.Tokens, Available: balance.Available, Enough: true,
		Needed: model.Cost(int64(p.count.Tokens + s.cfg.MinReplyTokens))}
	est.MaxTokens, est.Hold, err = s.budget(p, balance.Available)
	if err != nil {
		est.Enough, est.MaxTokens, est.Hold = false, 0, 0
	}
	est.Capped = est.Enough && est.MaxTokens < p.maxTokens
	return est, nil
}

// activeModel returns the model a reply is generated with. byUser says the
// id came from the request (an unknown one is then a bad request, not a
// model that went away).
func (s *Service) activeModel(ctx context.Context, modelID string, byUser bool) (models.Model, error) {
	model, err := models.Get(ctx, s.db, modelID)
	if byUser && errors.Is(err, models.ErrNotFound) {
		return models.Model{}, luna.Errorf(luna.CodeInvalidRequest, "Unknown model %q.", modelID)
	}
	if err != nil {
		return models.Model{}, err
	}
	if !model.Active {
		return models.Model{}, ErrModelUnavailable
	}
	return model, nil
}

// checkContent trims a message's text and checks its length; empty text is
// refused unless allowEmpty.
func checkContent(content string, allowEmpty bool) (string, error) {
	content = strings.TrimSpace(content)
	switch {
	case content == "" && !allowEmpty:
		return "", luna.Errorf(luna.CodeInvalidRequest, "The message is empty.")
	case utf8.RuneCountInString(content) > MaxContentChars:
		return "", luna.Errorf(luna.CodeInvalidRequest, "The message is longer than %d characters.", MaxContentChars)
	}
	return content, nil
}
