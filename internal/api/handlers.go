package api

import (
	"context"
	_ "embed"
	"errors"
	"io"
	"net/http"
	"time"

	"luna"
	"luna/internal/accounts"
	"luna/internal/clerk"
	"luna/internal/credits"
	"luna/internal/models"
)

// userJSON is a user as the API shows it.
type userJSON struct {
	ID        string       `json:"id"`
	Email     string       `json:"email"`
	Name      string       `json:"name"`
	Provider  string       `json:"provider"`
	CreatedAt time.Time    `json:"createdAt"`
	Credits   luna.Credits `json:"credits"`
}

func (s *Server) userWithCredits(ctx context.Context, u luna.User) (userJSON, error) {
	c, err := s.ledger.Balance(ctx, u.ID)
	if err != nil {
		return userJSON{}, err
	}
	return userJSON{ID: u.ID, Email: u.Email, Name: u.Name, Provider: u.Provider, CreatedAt: u.CreatedAt, Credits: c}, nil
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		s.logger.WarnContext(r.Context(), "readiness check failed", "err", err)
		s.writeError(w, r, errorf(luna.CodeUnavailable, "The database is not reachable."))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "database": string(s.db.Dialect)})
}

//go:embed openapi.json
var openAPIDocument []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(openAPIDocument) // client went away
}

// handleAuthConfig tells clients how to sign in before they try: the
// identity mode, the sign-up mode, the image price, and how long a reply
// may stay silent (clients say a model is slow well before that).
func (s *Server) handleAuthConfig(w http.ResponseWriter, r *http.Request) {
	cfg := map[string]any{"mode": s.authMode, "signupMode": nil, "imageCost": s.imageCost,
		"replyIdleTimeoutMs": s.chat.ReplyIdleTimeout().Milliseconds()}
	if s.authMode == AuthLocal {
		cfg["signupMode"] = s.accounts.SignupMode()
	}
	writeJSON(w, http.StatusOK, cfg)
}

type sessionJSON struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	User      userJSON  `json:"user"`
}

func (s *Server) localAuthOnly(w http.ResponseWriter, r *http.Request) bool {
	if s.authMode == AuthLocal {
		return true
	}
	s.writeError(w, r, errorf(luna.CodeNotFound, "Sign-in is handled by Clerk on this server; use the app to sign in."))
	return false
}

func (s *Server) handleSignup(w http.ResponseWriter, r *http.Request) {
	if !s.localAuthOnly(w, r) {
		return
	}
	var req struct {
		Email      string `json:"email"`
		Password   string `json:"password"`
		Name       string `json:"name"`
		InviteCode string `json:"inviteCode"`
	}
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	user, session, err := s.accounts.Signup(r.Context(), accounts.SignupRequest{
		Email: req.Email, Password: req.Password, Name: req.Name, InviteCode: req.InviteCode,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeSession(w, r, http.StatusCreated, user, session)
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if !s.localAuthOnly(w, r) {
		return
	}
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	user, session, err := s.accounts.Login(r.Context(), req.Email, req.Password)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeSession(w, r, http.StatusOK, user, session)
}

func (s *Server) writeSession(w http.ResponseWriter, r *http.Request, status int, user luna.User, session accounts.Session) {
	u, err := s.userWithCredits(r.Context(), user)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, sessionJSON{Token: session.Token, ExpiresAt: session.ExpiresAt, User: u})
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if !s.localAuthOnly(w, r) {
		return
	}
	token := tokenFrom(r.Context())
	if err := s.accounts.Logout(r.Context(), token); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.endSessions(r.Context(), userFrom(r.Context()).ID, sessionKey(token))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	u, err := s.userWithCredits(r.Context(), userFrom(r.Context()))
	if errors.Is(err, credits.ErrUserNotFound) {
		err = accounts.ErrUnauthorized
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// modelJSON is a model as clients see it: price and limits, no secrets.
type modelJSON struct {
	ID                 string  `json:"id"`
	Name               string  `json:"name"`
	Description        string  `json:"description"`
	Demo               bool    `json:"demo"`
	ContextTokens      int     `json:"contextTokens"`
	MaxOutputTokens    int     `json:"maxOutputTokens"`
	CreditsPer1kTokens float64 `json:"creditsPer1kTokens"`
}

type listJSON[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"nextCursor"`
}

func (s *Server) handleListModels(w http.ResponseWriter, r *http.Request) {
	list, err := models.ListActive(r.Context(), s.db)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]modelJSON, 0, len(list))
	for _, m := range list {
		items = append(items, modelJSON{
			ID: m.ID, Name: m.DisplayName, Description: m.Description, Demo: m.Demo,
			ContextTokens: m.ContextTokens, MaxOutputTokens: m.MaxOutputTokens, CreditsPer1kTokens: m.CreditsPer1KTokens(),
		})
	}
	writeJSON(w, http.StatusOK, listJSON[modelJSON]{Items: items})
}

// maxWebhookBytes bounds a Clerk webhook body; user events are a few KiB.
const maxWebhookBytes = 1 << 20

func (s *Server) handleClerkWebhook(w http.ResponseWriter, r *http.Request) {
	if s.clerkWebhooks == nil {
		s.writeError(w, r, errorf(luna.CodeNotFound, "Clerk webhooks are not configured on this server."))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBytes))
	if err != nil {
		s.writeError(w, r, jsonError(err))
		return
	}
	event, err := s.clerkWebhooks.Parse(body, r.Header)
	switch {
	case errors.Is(err, clerk.ErrInvalidSignature):
		s.writeError(w, r, errorf(luna.CodeUnauthorized, "The webhook signature is missing, wrong or too old."))
		return
	case err != nil:
		s.writeError(w, r, errorf(luna.CodeInvalidRequest, "The webhook payload is not a Clerk event Luna understands."))
		return
	}
	changed, err := s.accounts.ApplyClerkWebhook(r.Context(), event.MessageID, event.Type, accounts.ClerkUser{
		ID: event.User.ID, Email: event.User.Email, Name: event.User.DisplayName(), UpdatedAt: event.User.UpdatedAt,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.logger.InfoContext(r.Context(), "clerk webhook", "type", event.Type, "message_id", event.MessageID, "changed", changed)
	if event.Type == accounts.ClerkUserDeleted {
		if id, err := s.accounts.ClerkUserID(r.Context(), event.User.ID); err == nil {
			s.endSessions(r.Context(), id, "")
		} else {
			s.logger.ErrorContext(r.Context(), "find the deleted clerk user to close their streams", "err", err)
		}
	}
	writeJSON(w, http.StatusOK, map[string]bool{"received": true})
}
