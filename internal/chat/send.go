package chat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"luna"
	"luna/internal/credits"
	"luna/internal/events"
	"luna/internal/ratelimit"
	"luna/internal/store"
)

// SendRequest is a user's new message.
type SendRequest struct {
	UserID          string
	ConversationID  string
	Content         string
	ClientMessageID string // optional; a retried send with the same id returns the first result
	// RateLimit, if set, counts the send against the user's request rate
	// inside its transaction, and refuses it over the limit once the send
	// is known not to be a retry: retries are never counted, and neither
	// are sends refused later in the transaction (it rolls back).
	RateLimit *ratelimit.Counter
}

// errRetried ends a send's transaction when it turns out to be a retry of
// a send committed meanwhile.
var errRetried = errors.New("retried send")

// Send stores the user's message and an assistant placeholder, reserves
// the most the reply can cost, and starts generating the reply. It returns
// at once with both messages, their versions filled in.
func (s *Service) Send(ctx context.Context, req SendRequest) (userMsg, reply Message, err error) {
	content, err := checkContent(req.Content, false)
	if err != nil {
		return Message{}, Message{}, err
	}
	if len(req.ClientMessageID) > 100 {
		return Message{}, Message{}, luna.Errorf(luna.CodeInvalidRequest, "clientMessageId must be at most 100 characters.")
	}
	conv, model, err := s.conversationWithModel(ctx, req.UserID, req.ConversationID)
	if err != nil {
		return Message{}, Message{}, err
	}
	if req.ClientMessageID != "" {
		if u, r, found, err := s.findSent(ctx, s.db, conv.ID, req.ClientMessageID, content); err != nil || found {
			return s.sentWithVersions(ctx, u, r, err)
		}
	}
	if s.engine.closing() {
		return Message{}, Message{}, ErrShuttingDown
	}
	if !model.Active {
		return Message{}, Message{}, ErrModelUnavailable
	}
	// The new message follows the shown path (versions.go).
	history, err := pathTo(ctx, s.db, conv.LeafMessageID, historyLimit, true)
	if err != nil {
		return Message{}, Message{}, err
	}
	now := s.now()
	userMsg = Message{
		ID: newID(), ConversationID: conv.ID, UserID: req.UserID, Role: "user", Content: content,
		Status: StatusComplete, ClientMessageID: req.ClientMessageID, ParentID: conv.LeafMessageID,
		CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
	}
	// The same count decides what fits in the context and what is held.
	plan, err := s.planReply(ctx, model, append(history, userMsg), false)
	if err != nil {
		return Message{}, Message{}, err
	}

	replyAt := now.Add(1e6) // one millisecond later: the reply sorts after the question
	reply = Message{
		ID: newID(), ConversationID: conv.ID, UserID: req.UserID, Role: "assistant", Status: StatusPending,
		ParentID: userMsg.ID, CreatedAt: replyAt.UTC(), UpdatedAt: replyAt.UTC(),
	}
	// On PostgreSQL the usual send is one round trip (sendAtOnce); when it
	// does not apply, the transaction runs step by step and says why.
	published := false
	err = errNotAtOnce
	if s.db.Dialect == store.Postgres {
		published, err = s.sendAtOnce(ctx, req, conv, userMsg, &reply, plan, now)
	}
	if errors.Is(err, errNotAtOnce) {
		err = s.db.InTx(ctx, func(tx *sql.Tx) error {
			return s.sendTx(ctx, tx, req, conv, &userMsg, &reply, plan, now)
		})
	}
	if errors.Is(err, errRetried) {
		return s.sentWithVersions(ctx, userMsg, reply, nil)
	}
	if store.IsUniqueViolation(err) && req.ClientMessageID != "" {
		// A concurrent retry of the same send won the race.
		if u, r, found, ferr := s.findSent(ctx, s.db, conv.ID, req.ClientMessageID, content); ferr != nil || found {
			return s.sentWithVersions(ctx, u, r, ferr)
		}
	}
	if err != nil {
		return Message{}, Message{}, err
	}
	// Each is the only version of itself: the shown leaf the question
	// follows has no other child (a leaf is the newest message below any
	// version a user selects, and the claim above saw it unchanged).
	userMsg.Versions, reply.Versions = []string{userMsg.ID}, []string{reply.ID}
	s.engine.start(reply, plan)
	conv.GeneratingMessageID, conv.UpdatedAt, conv.LastMessagePreview = reply.ID, now.UTC(), preview(content)
	if !published {
		b := sendEvents(req.UserID, userMsg.ID, reply.ID, conv.ID)
		s.publishAll(ctx, &b)
	}
	return userMsg, reply, nil
}

// sendEvents are what a send tells the user's clients.
func sendEvents(userID, userMsgID, replyID, conversationID string) events.Batch {
	var b events.Batch
	b.User(userID, events.MessageCreated, userMsgID)
	b.User(userID, events.MessageCreated, replyID)
	b.User(userID, events.ConversationUpdated, conversationID)
	b.User(userID, events.CreditsUpdated, "")
	return b
}

// errNotAtOnce ends a send's transaction whose one statement (sendAtOnce)
// did not apply; the send tries again the general way.
var errNotAtOnce = errors.New("send: not in one statement")

// sendTx is a send's transaction: it locks the user's row (this user's
// sends count their running replies one after the other; SQLite serialises
// anyway), answers a retry that committed while this send waited for the
// lock with its messages (errRetried, before any limit counts it), counts
// the request, holds the credits, claims the conversation and stores both
// messages. On success userMsg and reply are as stored.
func (s *Service) sendTx(ctx context.Context, tx *sql.Tx, req SendRequest, conv Conversation, userMsg, reply *Message, plan replyPlan, now time.Time) error {
	balance, err := credits.LockBalanceTx(ctx, tx, req.UserID)
	if err != nil {
		return err
	}
	if req.ClientMessageID != "" {
		u, r, found, err := s.findSent(ctx, tx, conv.ID, req.ClientMessageID, userMsg.Content)
		if err != nil {
			return err
		}
		if found {
			*userMsg, *reply = u, r
			return errRetried
		}
	}
	if err := req.RateLimit.AllowTx(ctx, tx); err != nil {
		return err
	}
	reply.MaxTokens, reply.ReservationID, err = s.holdReply(ctx, tx, req.UserID, balance, conv.ID, reply.ID, "reply:"+reply.ID, plan)
	if err != nil {
		return err
	}
	if err := s.claimConversation(ctx, tx, req.UserID, conv, reply.ID, reply.ID, preview(userMsg.Content), now); err != nil {
		return err
	}
	return s.insertMessages(ctx, tx, *userMsg, *reply)
}

// notAtOnce is the text of the assertion that fails sendAtOnce's statement
// when the usual case does not apply.
const notAtOnce = "send: not the usual case"

// sendAtOnce is the usual send on PostgreSQL, in one round trip: a batch
// (store.RunBatch, one implicit transaction) of two statements. The first
// locks the user's row; the second, whose snapshot follows the lock, so
// that it sees every send of this user committed before, does the rest:
// it counts the request against the rate limit, counts the user's running
// replies, places the hold (credits.ReserveSteps) when both are within
// their limits and the available credits cover the reply uncapped, claims
// the conversation as it was read, inserts the question and the reply, and
// notifies the user's clients (pg_notify, delivered at commit). Unless all
// of that was written the statement fails on purpose (a cast of notAtOnce
// to an integer) and the batch rolls back whole: a refusal, a reply the
// balance would cap, a free model, a retry (its question's client id is
// taken), a conversation that changed. Any failure is errNotAtOnce: sendTx
// then does it step by step, and says why it cannot.
func (s *Service) sendAtOnce(ctx context.Context, req SendRequest, conv Conversation, userMsg Message, reply *Message, plan replyPlan, now time.Time) (published bool, err error) {
	maxTokens := plan.maxTokens
	amount := plan.model.Cost(int64(plan.count.Tokens + maxTokens))
	if maxTokens < s.cfg.MinReplyTokens || amount == 0 {
		return false, errNotAtOnce
	}
	var args store.Args
	var with []string
	limits := `(` + strings.Replace(countRunningSQL, "$1", args.Add(req.UserID), 1) + `) < ` + args.Add(s.cfg.MaxRunningPerUser)
	if req.RateLimit != nil {
		clause, within := req.RateLimit.Steps(&args)
		with = append(with, clause)
		limits += ` AND ` + within
	}
	hold := s.ledger.ReserveSteps(&args, credits.ReserveRequest{
		UserID: req.UserID, Amount: amount, TTL: s.cfg.ReservationTTL,
		IdempotencyKey: "reply:" + reply.ID, Reference: credits.MessageReference(conv.ID, reply.ID),
	}, limits)
	withHold := *reply
	withHold.MaxTokens, withHold.ReservationID = maxTokens, hold.HoldID
	b := sendEvents(req.UserID, userMsg.ID, reply.ID, conv.ID)
	notify, published, err := s.bus.NotifyExpr(&b, &args)
	if err != nil {
		return false, err
	}
	with = append(with, hold.Clauses,
		`claim AS (`+claimSQL(&args, req.UserID, conv, reply.ID, reply.ID, preview(userMsg.Content), now)+`
			AND EXISTS (SELECT 1 FROM reserve_entry) RETURNING id)`,
		`question AS (INSERT INTO messages (`+insertColumns+`) SELECT `+s.messageValues(&args, userMsg)+` FROM claim RETURNING id)`,
		`answer AS (INSERT INTO messages (`+insertColumns+`) SELECT `+s.messageValues(&args, withHold)+` FROM question RETURNING id)`)
	q := `WITH ` + strings.Join(with, ",\n") + `
		SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM answer) THEN '1' ELSE '` + notAtOnce + `' END AS integer), ` + notify
	var one int
	var notified string
	err = s.db.RunBatch(ctx, credits.LockUserStatement(req.UserID),
		store.BatchStatement{SQL: q, Args: args.Values(), Scan: []any{&one, &notified}})
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if !strings.Contains(err.Error(), notAtOnce) && !store.IsUniqueViolation(err) {
			s.logger.Warn("send in one round trip failed; sending step by step", "err", err)
		}
		return false, errNotAtOnce
	}
	reply.MaxTokens, reply.ReservationID = maxTokens, hold.HoldID
	return published, nil
}

// sentWithVersions returns the messages of an earlier send with their
// versions now (the reply may have been regenerated since).
func (s *Service) sentWithVersions(ctx context.Context, userMsg, reply Message, err error) (Message, Message, error) {
	if err != nil {
		return Message{}, Message{}, err
	}
	msgs := []Message{userMsg, reply}
	if err := s.WithVersions(ctx, msgs); err != nil {
		return Message{}, Message{}, err
	}
	return msgs[0], msgs[1], nil
}

// findSent returns the messages of an earlier send with the same client id,
// or ErrClientMessageIDReuse when that send had other content.
func (s *Service) findSent(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, conversationID, clientMessageID, content string) (userMsg, reply Message, found bool, err error) {
	userMsg, err = scanMessage(q.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = $1 AND client_message_id = $2`, conversationID, clientMessageID))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, Message{}, false, nil
	}
	if err != nil {
		return Message{}, Message{}, false, fmt.Errorf("find sent message: %w", err)
	}
	if userMsg.Content != content {
		return Message{}, Message{}, false, ErrClientMessageIDReuse
	}
	reply, err = scanMessage(q.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE parent_id = $1 AND role = 'assistant' ORDER BY created_at, id LIMIT 1`, userMsg.ID))
	if err != nil {
		return Message{}, Message{}, false, fmt.Errorf("find reply of sent message: %w", err)
	}
	return userMsg, reply, true, nil
}

// historyLimit bounds how many earlier messages are considered for the
// prompt; the context budget usually cuts sooner.
const historyLimit = 200

// claimConversation marks the conversation as generating replyID and shows
// leafID, provided no reply is generating and the shown path is still the
// one the prompt was built from; else 409.
func (s *Service) claimConversation(ctx context.Context, tx *sql.Tx, userID string, conv Conversation, replyID, leafID, lastPreview string, now time.Time) error {
	var args store.Args
	res, err := tx.ExecContext(ctx, claimSQL(&args, userID, conv, replyID, leafID, lastPreview, now), args.Values()...)
	if err != nil {
		return fmt.Errorf("claim conversation: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var generating sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT generating_message_id FROM conversations WHERE id = $1`, conv.ID).Scan(&generating)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrConversationNotFound // deleted meanwhile
	}
	if err != nil {
		return fmt.Errorf("claim conversation: %w", err)
	}
	if generating.Valid {
		return ErrGenerationInProgress
	}
	return ErrConversationChanged
}

// claimSQL is the update that claims conv (see claimConversation), its
// arguments added to args; a statement that claims only under a further
// condition appends " AND " and it.
func claimSQL(args *store.Args, userID string, conv Conversation, replyID, leafID, lastPreview string, now time.Time) string {
	return `UPDATE conversations SET generating_message_id = ` + args.Add(replyID) + `, leaf_message_id = ` + args.Add(leafID) + `,
			updated_at = ` + args.Add(store.NowMillis(now)) + `,
			last_message_preview = COALESCE(NULLIF(` + args.Add(lastPreview) + `, ''), last_message_preview)
		WHERE id = ` + args.Add(conv.ID) + ` AND user_id = ` + args.Add(userID) + ` AND generating_message_id IS NULL
			AND COALESCE(leaf_message_id, '') = ` + args.Add(conv.LeafMessageID)
}

// insertMessages stores new messages in one statement: questions as
// complete, replies as pending under this instance's lease (held until
// lease TTL after their creation).
func (s *Service) insertMessages(ctx context.Context, tx *sql.Tx, msgs ...Message) error {
	var args store.Args
	values := make([]string, 0, len(msgs))
	for _, m := range msgs {
		values = append(values, "("+s.messageValues(&args, m)+")")
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO messages (`+insertColumns+`) VALUES `+strings.Join(values, ", "), args.Values()...)
	if err != nil {
		return fmt.Errorf("insert messages: %w", err)
	}
	return nil
}

// insertColumns are the columns messageValues gives a new message.
const insertColumns = `id, conversation_id, user_id, role, content, status,
	client_message_id, parent_id, reservation_id, max_tokens, lease_owner, lease_expires_at, created_at, updated_at`

// messageValues adds a new message's insertColumns to args and returns
// their placeholders: a question as complete, a reply as pending under
// this instance's lease (held until lease TTL after its creation).
func (s *Service) messageValues(args *store.Args, m Message) string {
	created := store.NowMillis(m.CreatedAt)
	status, leaseOwner, leaseExpires := StatusComplete, any(nil), any(nil)
	if m.Role == "assistant" {
		status, leaseOwner, leaseExpires = StatusPending, s.engine.instanceID, store.NowMillis(m.CreatedAt.Add(s.cfg.LeaseTTL))
	}
	marks := make([]string, 0, 14)
	for _, v := range []any{m.ID, m.ConversationID, m.UserID, m.Role, m.Content, status,
		nullString(m.ClientMessageID), nullString(m.ParentID), nullString(m.ReservationID), m.MaxTokens,
		leaseOwner, leaseExpires, created, created} {
		marks = append(marks, args.Add(v))
	}
	return strings.Join(marks, ", ")
}
