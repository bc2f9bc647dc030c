package clerk

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// ErrInvalidSignature is wrapped by Parse when the Svix headers are missing,
// the signature does not match the raw body, or the timestamp is more than
// five minutes off. Callers answer it with HTTP 400 or 401.
var ErrInvalidSignature = errors.New("clerk: invalid webhook signature")

// ErrInvalidPayload is wrapped by Parse when the signature is good but the
// body is not a Clerk event it understands. Retrying will not help.
var ErrInvalidPayload = errors.New("clerk: invalid webhook payload")

// WebhookVerifier checks and decodes Clerk webhooks delivered by Svix. It is
// safe for concurrent use.
type WebhookVerifier struct {
	webhook *svix.Webhook
}

// NewWebhookVerifier returns a verifier for the endpoint's signing secret
// ("whsec_<base64>", from the Clerk dashboard).
func NewWebhookVerifier(secret string) (*WebhookVerifier, error) {
	// svix accepts an empty key at the pinned version; an empty secret is
	// always a configuration mistake.
	if strings.TrimPrefix(secret, "whsec_") == "" {
		return nil, errors.New("clerk: webhook signing secret is empty")
	}
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return nil, fmt.Errorf("clerk: webhook signing secret: %w", err)
	}
	return &WebhookVerifier{webhook: wh}, nil
}

// Event is a verified Clerk webhook event.
type Event struct {
	// MessageID is the svix-id (or webhook-id) header: the same on every
	// retry of one message, so it is the deduplication key.
	MessageID string
	// Type is the event type, e.g. "user.created", "user.updated",
	// "user.deleted"; callers ignore types they do not handle.
	Type string
	// Timestamp is when Clerk created the event.
	Timestamp time.Time
	// User is filled for "user.*" events.
	User User
}

// User is the part of a Clerk user that Luna keeps.
type User struct {
	// ID is the Clerk user id ("user_..."), never empty in a user event.
	ID string
	// Deleted is true for "user.deleted"; the other fields are then empty.
	Deleted bool
	// Email is the primary email address: the entry of email_addresses
	// whose id is primary_email_address_id, else the first entry, else "".
	Email     string
	FirstName string
	LastName  string
	Username  string
	ImageURL  string
	// CreatedAt and UpdatedAt are zero when absent, as in "user.deleted".
	// Compare UpdatedAt to skip a stale "user.updated" delivered late.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DisplayName returns "First Last" (trimmed), else the username, else "".
func (u User) DisplayName() string {
	if name := strings.TrimSpace(u.FirstName + " " + u.LastName); name != "" {
		return name
	}
	return u.Username
}

// Parse verifies the Svix signature on the raw request body, with svix's
// five-minute timestamp tolerance, then decodes the event. Pass the body
// exactly as received: re-encoded JSON does not verify.
func (w *WebhookVerifier) Parse(body []byte, header http.Header) (Event, error) {
	return w.parse(body, header, true)
}

// parse is Parse with the timestamp check optional, so that tests can use
// fixed published signatures.
func (w *WebhookVerifier) parse(body []byte, header http.Header, checkTimestamp bool) (Event, error) {
	verify := w.webhook.Verify
	if !checkTimestamp {
		verify = w.webhook.VerifyIgnoringTimestamp
	}
	if err := verify(body, header); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}

	var env eventJSON
	if err := json.Unmarshal(body, &env); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	if env.Type == "" {
		return Event{}, fmt.Errorf("%w: no event type", ErrInvalidPayload)
	}
	ev := Event{
		MessageID: messageID(header),
		Type:      env.Type,
		Timestamp: fromMillis(env.Timestamp),
	}
	if !strings.HasPrefix(env.Type, "user.") {
		return ev, nil
	}

	var u userJSON
	if err := json.Unmarshal(env.Data, &u); err != nil {
		return Event{}, fmt.Errorf("%w: %s data: %w", ErrInvalidPayload, env.Type, err)
	}
	if u.ID == "" {
		return Event{}, fmt.Errorf("%w: %s data has no id", ErrInvalidPayload, env.Type)
	}
	ev.User = User{
		ID:        u.ID,
		Deleted:   u.Deleted || env.Type == "user.deleted",
		Email:     u.primaryEmail(),
		FirstName: u.FirstName,
		LastName:  u.LastName,
		Username:  u.Username,
		ImageURL:  u.ImageURL,
		CreatedAt: fromMillis(u.CreatedAt),
		UpdatedAt: fromMillis(u.UpdatedAt),
	}
	return ev, nil
}

// messageID returns the id from the header set that svix verified: the
// svix-* headers when all three are present, else the webhook-* ones.
func messageID(h http.Header) string {
	if h.Get("svix-id") != "" && h.Get("svix-signature") != "" && h.Get("svix-timestamp") != "" {
		return h.Get("svix-id")
	}
	return h.Get("webhook-id")
}

// fromMillis converts Clerk's Unix milliseconds; 0 (absent or null) gives the
// zero time.
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// eventJSON is the Clerk webhook envelope. JSON null leaves a field zero.
type eventJSON struct {
	Type      string          `json:"type"`
	Timestamp int64           `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// userJSON is the Clerk User object, or the deleted-object stub
// {"deleted":true,"id":...,"object":"user"}.
type userJSON struct {
	ID             string `json:"id"`
	Deleted        bool   `json:"deleted"`
	EmailAddresses []struct {
		ID           string `json:"id"`
		EmailAddress string `json:"email_address"`
	} `json:"email_addresses"`
	PrimaryEmailAddressID string `json:"primary_email_address_id"`
	FirstName             string `json:"first_name"`
	LastName              string `json:"last_name"`
	Username              string `json:"username"`
	ImageURL              string `json:"image_url"`
	CreatedAt             int64  `json:"created_at"`
	UpdatedAt             int64  `json:"updated_at"`
}

func (u userJSON) primaryEmail() string {
	for _, e := range u.EmailAddresses {
		if e.ID == u.PrimaryEmailAddressID && u.PrimaryEmailAddressID != "" {
			return e.EmailAddress
		}
	}
	if len(u.EmailAddresses) > 0 {
		return u.EmailAddresses[0].EmailAddress
	}
	return ""
}
