package chat

import "time"

// ConversationJSON is a conversation as the API and events show it.
type ConversationJSON struct {
	ID                  string    `json:"id"`
	ModelID             string    `json:"modelId"`
	Title               string    `json:"title"`
	LastMessagePreview  string    `json:"lastMessagePreview"`
	GeneratingMessageID *string   `json:"generatingMessageId"`
	LeafMessageID       *string   `json:"leafMessageId"`
	CreatedAt           time.Time `json:"createdAt"`
	UpdatedAt           time.Time `json:"updatedAt"`
}

// ConversationEvent is the JSON view of c.
func ConversationEvent(c Conversation) ConversationJSON {
	v := ConversationJSON{ID: c.ID, ModelID: c.ModelID, Title: c.Title, LastMessagePreview: c.LastMessagePreview,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	if c.GeneratingMessageID != "" {
		v.GeneratingMessageID = &c.GeneratingMessageID
	}
	if c.LeafMessageID != "" {
		v.LeafMessageID = &c.LeafMessageID
	}
	return v
}

// ErrorJSON is a message's failure.
type ErrorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// MessageJSON is a message as the API shows it. Events leave Content out
// (it can be long); clients read it from the message or its stream.
type MessageJSON struct {
	ID               string     `json:"id"`
	ConversationID   string     `json:"conversationId"`
	Role             string     `json:"role"`
	Content          *string    `json:"content,omitempty"`
	Status           string     `json:"status"`
	PromptTokens     int        `json:"promptTokens"`
	CompletionTokens int        `json:"completionTokens"`
	CreditsCharged   int64      `json:"creditsCharged"`
	CreditsShortfall int64      `json:"creditsShortfall"`
	FinishReason     string     `json:"finishReason"`
	Error            *ErrorJSON `json:"error"`
	ClientMessageID  *string    `json:"clientMessageId"`
	// ParentID is the message this one follows (versions.go); versions of
	// a message share it.
	ParentID *string `json:"parentId"`
	// VersionIDs are the ids of this message's versions, oldest first;
	// VersionIndex (1-based) is this one's place among them.
	VersionIDs   []string  `json:"versionIds"`
	VersionIndex int       `json:"versionIndex"`
	VersionCount int       `json:"versionCount"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// MessageView is the JSON view of m, with its content.
func MessageView(m Message) MessageJSON {
	v := MessageEvent(m)
	v.Content = &m.Content
	return v
}

// MessageEvent is the JSON view of m without its content, for events.
func MessageEvent(m Message) MessageJSON {
	v := MessageJSON{ID: m.ID, ConversationID: m.ConversationID, Role: m.Role, Status: m.Status,
		PromptTokens: m.PromptTokens, CompletionTokens: m.CompletionTokens, CreditsCharged: m.CreditsCharged,
		CreditsShortfall: m.CreditsShortfall, FinishReason: m.FinishReason, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt}
	if m.ErrorCode != "" || m.ErrorMessage != "" {
		v.Error = &ErrorJSON{Code: m.ErrorCode, Message: m.ErrorMessage}
	}
	if m.ClientMessageID != "" {
		v.ClientMessageID = &m.ClientMessageID
	}
	if m.ParentID != "" {
		v.ParentID = &m.ParentID
	}
	v.VersionIDs = m.Versions
	if len(v.VersionIDs) == 0 {
		v.VersionIDs = []string{m.ID}
	}
	v.VersionCount, v.VersionIndex = len(v.VersionIDs), 1
	for i, id := range v.VersionIDs {
		if id == m.ID {
			v.VersionIndex = i + 1
		}
	}
	return v
}
