// Package events carries live changes to the clients watching them: a
// user's events (conversation created, message updated, credits changed…)
// for GET /v1/events, and "this message changed" signals for the streams of
// replies generated on another instance.
//
// With SQLite there is one instance and delivery is in-process. With
// PostgreSQL every publish is a NOTIFY on one channel and every instance
// LISTENs, so a client sees the same events whichever instance it reaches.
//
// A notification carries ids only (what kind of change, whose, which
// conversation, message or image), never content, so it stays small
// whatever the prompt or title: the receiver reads the current state from
// the database before it sends the event.
package events

import (
	"context"
	"sync"

	"luna/internal/store"
)

// Change is one change for a user: the SSE event type and the id of the
// conversation, message or image it is about (empty for credits).
type Change struct {
	Type string `json:"t"`
	ID   string `json:"i,omitempty"`
}

// Event types published by Luna.
const (
	ConversationCreated = "conversation.created"
	ConversationUpdated = "conversation.updated"
	ConversationDeleted = "conversation.deleted" // data: {"id": …}; final, later events for that id are stale
	MessageCreated      = "message.created"
	MessageUpdated      = "message.updated"
	CreditsUpdated      = "credits.updated"
	ImageUpdated        = "image.updated"
)

// UserSubscription receives one user's changes. When the subscriber falls
// too far behind, Lagged is closed and no more changes are delivered: the
// client must reload what it shows.
type UserSubscription struct {
	C      <-chan Change
	Lagged <-chan struct{}

	c      chan Change
	lagged chan struct{}
	once   sync.Once
	bus    *hub
	userID string
}

// Close stops the subscription.
func (s *UserSubscription) Close() { s.bus.removeUser(s) }

// MessageSubscription signals that a message changed (new text persisted,
// or finished). Signals coalesce: one pending signal stands for any number.
type MessageSubscription struct {
	C <-chan struct{}

	c         chan struct{}
	bus       *hub
	messageID string
}

// Close stops the subscription.
func (s *MessageSubscription) Close() { s.bus.removeMessage(s) }

// SessionWatch ends when its session does: Ended is closed when the
// session is signed out or its user deleted, on any instance.
type SessionWatch struct {
	Ended <-chan struct{}

	ended  chan struct{}
	onEnd  func() // called once when the session ends, if set
	once   sync.Once
	bus    *hub
	userID string
	key    string
}

// Close stops watching.
func (w *SessionWatch) Close() { w.bus.removeSession(w) }

// userBuffer is how many events a slow /v1/events client may fall behind
// before it is told to resync.
const userBuffer = 256

// hub is the in-process fan-out shared by both bus kinds.
type hub struct {
	mu       sync.Mutex
	users    map[string]map[*UserSubscription]struct{}
	messages map[string]map[*MessageSubscription]struct{}
	sessions map[string]map[*SessionWatch]struct{} // by user id
}

func newHub() *hub {
	return &hub{users: map[string]map[*UserSubscription]struct{}{}, messages: map[string]map[*MessageSubscription]struct{}{},
		sessions: map[string]map[*SessionWatch]struct{}{}}
}

func (h *hub) watchSession(userID, key string, onEnd func()) *SessionWatch {
	w := &SessionWatch{ended: make(chan struct{}), onEnd: onEnd, bus: h, userID: userID, key: key}
	w.Ended = w.ended
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sessions[userID] == nil {
		h.sessions[userID] = map[*SessionWatch]struct{}{}
	}
	h.sessions[userID][w] = struct{}{}
	return w
}

func (h *hub) removeSession(w *SessionWatch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions[w.userID], w)
	if len(h.sessions[w.userID]) == 0 {
		delete(h.sessions, w.userID)
	}
}

// endSessions ends the watches of one session of the user, or of all of
// them when key is empty.
func (h *hub) endSessions(userID, key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.sessions[userID] {
		if key == "" || w.key == key {
			w.once.Do(func() {
				close(w.ended)
				if w.onEnd != nil {
					w.onEnd()
				}
			})
		}
	}
}

func (h *hub) subscribeUser(userID string) *UserSubscription {
	s := &UserSubscription{c: make(chan Change, userBuffer), lagged: make(chan struct{}), bus: h, userID: userID}
	s.C, s.Lagged = s.c, s.lagged
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.users[userID] == nil {
		h.users[userID] = map[*UserSubscription]struct{}{}
	}
	h.users[userID][s] = struct{}{}
	return s
}

func (h *hub) removeUser(s *UserSubscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.users[s.userID], s)
	if len(h.users[s.userID]) == 0 {
		delete(h.users, s.userID)
	}
}

func (h *hub) deliverUser(userID string, ev Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.users[userID] {
		select {
		case s.c <- ev:
		default:
			// Never block the publisher on a slow client: tell it to resync.
			s.once.Do(func() { close(s.lagged) })
			delete(h.users[userID], s)
		}
	}
}

func (h *hub) subscribeMessage(messageID string) *MessageSubscription {
	s := &MessageSubscription{c: make(chan struct{}, 1), bus: h, messageID: messageID}
	s.C = s.c
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.messages[messageID] == nil {
		h.messages[messageID] = map[*MessageSubscription]struct{}{}
	}
	h.messages[messageID][s] = struct{}{}
	return s
}

func (h *hub) removeMessage(s *MessageSubscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.messages[s.messageID], s)
	if len(h.messages[s.messageID]) == 0 {
		delete(h.messages, s.messageID)
	}
}

func (h *hub) deliverMessage(messageID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.messages[messageID] {
		select {
		case s.c <- struct{}{}:
		default: // a signal is already pending
		}
	}
}

// Bus publishes and subscribes. Use NewLocal for one instance (SQLite) and
// NewPostgres for several.
type Bus struct {
	hub         *hub
	publish     func(ctx context.Context, n notification) error
	publishAll  func(ctx context.Context, ns []notification) error // several in one statement on PostgreSQL
	distributed bool
}

// Distributed reports whether events cross instances (PostgreSQL). Work
// that only other instances need can be skipped when it is false.
func (b *Bus) Distributed() bool { return b.distributed }

// notification is what travels between instances: ids only.
type notification struct {
	UserID       string   `json:"u,omitempty"`
	Change       *Change  `json:"c,omitempty"`
	MessageIDs   []string `json:"m,omitempty"`
	EndedSession *string  `json:"s,omitempty"` // "" = all of the user's sessions
}

// NewLocal returns an in-process bus.
func NewLocal() *Bus {
	h := newHub()
	return &Bus{hub: h, publish: func(_ context.Context, n notification) error {
		h.dispatch(n)
		return nil
	}, publishAll: func(_ context.Context, ns []notification) error {
		for _, n := range ns {
			h.dispatch(n)
		}
		return nil
	}}
}

func (h *hub) dispatch(n notification) {
	switch {
	case n.Change != nil && n.UserID != "":
		h.deliverUser(n.UserID, *n.Change)
	case n.EndedSession != nil && n.UserID != "":
		h.endSessions(n.UserID, *n.EndedSession)
	default:
		for _, id := range n.MessageIDs {
			h.deliverMessage(id)
		}
	}
}

// PublishUser tells every subscriber of userID, on every instance, that
// the thing with id changed (call it once the change is committed).
// Errors are returned for logging; events are best effort (clients resync
// on reconnect).
func (b *Bus) PublishUser(ctx context.Context, userID, eventType, id string) error {
	return b.publish(ctx, notification{UserID: userID, Change: &Change{Type: eventType, ID: id}})
}

// Batch collects notifications to publish together with PublishBatch: in
// order, and on PostgreSQL in one statement instead of one each. The zero
// value is empty and ready to use.
type Batch struct {
	ns []notification
}

// User adds what PublishUser would publish.
func (b *Batch) User(userID, eventType, id string) {
	b.ns = append(b.ns, notification{UserID: userID, Change: &Change{Type: eventType, ID: id}})
}

// Message adds what PublishMessage would publish.
func (b *Batch) Message(messageID string) {
	b.ns = append(b.ns, notification{MessageIDs: []string{messageID}})
}

// Messages adds what PublishMessages would publish.
func (b *Batch) Messages(messageIDs []string) {
	for len(messageIDs) > 0 {
		n := min(len(messageIDs), messagesPerNotification)
		b.ns = append(b.ns, notification{MessageIDs: messageIDs[:n]})
		messageIDs = messageIDs[n:]
	}
}

// PublishBatch publishes the batch's notifications in order (call it once
// the changes are committed). Errors are returned for logging, as with
// PublishUser.
func (b *Bus) PublishBatch(ctx context.Context, batch *Batch) error {
	if len(batch.ns) == 0 {
		return nil
	}
	return b.publishAll(ctx, batch.ns)
}

// NotifyExpr returns the batch as an SQL expression (text) for a statement
// that makes its changes, its arguments added to args. On PostgreSQL it is
// the batch's pg_notify calls, "concat(pg_notify($3, $4), …)", which
// PostgreSQL delivers when that statement's transaction commits, and not
// at all when it rolls back, so the changes and their notifications cost
// one round trip; inStatement is true. For a bus in-process it is ” and
// inStatement false: the caller publishes with PublishBatch after the
// commit.
func (b *Bus) NotifyExpr(batch *Batch, args *store.Args) (expr string, inStatement bool, err error) {
	if !b.distributed || len(batch.ns) == 0 {
		return "''", false, nil
	}
	calls, err := notifyCalls(batch.ns, args)
	if err != nil {
		return "", false, err
	}
	return "concat(" + calls + ")", true, nil
}

// PublishMessage signals that messageID changed.
func (b *Bus) PublishMessage(ctx context.Context, messageID string) error {
	return b.PublishMessages(ctx, []string{messageID})
}

// messagesPerNotification keeps a batch of message ids under PostgreSQL's
// NOTIFY payload limit.
const messagesPerNotification = 150

// PublishMessages signals that several messages changed, in as few
// notifications as fit (one per ~150 messages).
func (b *Bus) PublishMessages(ctx context.Context, messageIDs []string) error {
	var batch Batch
	batch.Messages(messageIDs)
	return b.PublishBatch(ctx, &batch)
}

// EndSessions tells every instance that one of the user's sessions ended
// (signed out), or with key "" all of them (the user was deleted), so that
// the streams opened with it close. key is whatever identifies a session to
// WatchSession; it travels in a notification, so it must not be a secret.
func (b *Bus) EndSessions(ctx context.Context, userID, key string) error {
	return b.publish(ctx, notification{UserID: userID, EndedSession: &key})
}

// WatchSession watches one of the user's sessions on this instance.
func (b *Bus) WatchSession(userID, key string) *SessionWatch {
	return b.hub.watchSession(userID, key, nil)
}

// WatchSessionFunc is WatchSession that also calls ended, once, when the
// session ends, from the goroutine that ends it (so ended must not block:
// a context's cancel fits). It saves a goroutine per watch.
func (b *Bus) WatchSessionFunc(userID, key string, ended func()) *SessionWatch {
	return b.hub.watchSession(userID, key, ended)
}

// SubscribeUser subscribes to one user's events on this instance.
func (b *Bus) SubscribeUser(userID string) *UserSubscription { return b.hub.subscribeUser(userID) }

// SubscribeMessage subscribes to change signals of one message.
func (b *Bus) SubscribeMessage(messageID string) *MessageSubscription {
	return b.hub.subscribeMessage(messageID)
}
