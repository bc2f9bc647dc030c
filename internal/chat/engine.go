package chat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"luna"
	"luna/internal/credits"
	"luna/internal/events"
	"luna/internal/llm"
	"luna/internal/models"
	"luna/internal/store"
)

// Why a generation's context was cancelled.
const (
	stopByUser     = "user"
	stopByShutdown = "shutdown"
	stopLeaseLost  = "lease-lost"
)

// generation is one reply being generated on this instance. Its text only
// grows; listeners read it from their own offset whenever changed is
// closed, so a slow listener never slows the generation: it just catches up
// with a bigger slice.
type generation struct {
	reply   Message
	model   models.Model
	history []Message
	prompt  []llm.Message   // what Send fitted into the context and held credits for
	count   llm.PromptCount // its tokens
	// continuing: the model continues the reply's text (the prompt's last
	// message), which text already holds; offsets count from its start.
	continuing bool
	ctx        context.Context
	cancel     context.CancelFunc

	mu         sync.Mutex
	text       []byte
	persisted  int
	status     string
	chunks     int
	changed    chan struct{}
	stopReason string
	final      *Message // set once the completion is committed
	detached   bool     // finishing failed; the database is the truth now
	leaseAt    time.Time
	holdAt     time.Time // when the credit hold was placed or last renewed
}

// snapshot returns the text from offset on, the status, whether the
// generation is over, and a channel closed at the next change.
func (g *generation) snapshot(offset int) (text []byte, final *Message, detached bool, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if offset < len(g.text) {
		text = append([]byte(nil), g.text[offset:]...)
	}
	return text, g.final, g.detached, g.changed
}

// notify wakes every listener; call with g.mu held.
func (g *generation) notify() {
	close(g.changed)
	g.changed = make(chan struct{})
}

func (g *generation) appendText(delta string) {
	if strings.IndexByte(delta, 0) >= 0 {
		delta = strings.ReplaceAll(delta, "\x00", "\uFFFD") // PostgreSQL text cannot hold NUL
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.text = append(g.text, delta...)
	g.chunks++
	g.status = StatusStreaming
	g.notify()
}

func (g *generation) stop(reason string) {
	g.mu.Lock()
	if g.stopReason == "" {
		g.stopReason = reason
	}
	g.mu.Unlock()
	g.cancel()
}

// engine owns the generations running on this instance.
type engine struct {
	s          *Service
	instanceID string
	// life is the context of the engine's own work, which outlives the
	// requests that start it: generations, their final commit, titles.
	// Shutdown stops generations through their own contexts.
	life context.Context

	mu       sync.Mutex
	gens     map[string]*generation
	stopping bool
	running  sync.WaitGroup           // generations and title jobs
	slots    map[string]chan struct{} // per model: a semaphore of upstream requests
}

func newEngine(life context.Context, s *Service, instanceID string) *engine {
	return &engine{s: s, instanceID: instanceID, life: life, gens: map[string]*generation{}, slots: map[string]chan struct{}{}}
}

// acquireModelSlot waits for one of the model's upstream slots, so that one
// busy user cannot flood a GPU server; it gives up after ModelSlotWait.
func (e *engine) acquireModelSlot(ctx context.Context, modelID string) (release func(), err error) {
	e.mu.Lock()
	slots := e.slots[modelID]
	if slots == nil {
		slots = make(chan struct{}, e.s.cfg.MaxRunningPerModel)
		e.slots[modelID] = slots
	}
	e.mu.Unlock()
	timer := time.NewTimer(e.s.cfg.ModelSlotWait)
	defer timer.Stop()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, errModelBusy
	}
}

var errModelBusy = errors.New("model busy")

func (e *engine) closing() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopping
}

func (e *engine) get(messageID string) *generation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gens[messageID]
}

// start begins generating reply as planned, in the background. The
// generation belongs to the server: it goes on when the client that sent it
// disconnects. A continued reply starts from its stored text.
func (e *engine) start(reply Message, p replyPlan) {
	ctx, cancel := context.WithTimeout(e.life, e.s.cfg.MaxDuration)
	g := &generation{reply: reply, model: p.model, history: p.history, prompt: p.prompt, count: p.count, continuing: p.continuing,
		ctx: ctx, cancel: cancel, status: StatusPending, changed: make(chan struct{}), leaseAt: e.s.now(), holdAt: e.s.now()}
	if p.continuing {
		g.text = []byte(reply.Content)
		g.persisted = len(g.text)
	}
	e.mu.Lock()
	e.gens[reply.ID] = g
	e.running.Add(1)
	e.mu.Unlock()
	go e.run(g)
}

func (e *engine) run(g *generation) {
	defer e.running.Done()
	defer g.cancel()
	model := g.model
	prompt, promptTokens := g.prompt, g.count.Tokens
	firstToken := model.FirstTokenTimeout
	switch {
	case firstToken > 0:
	case strings.Contains(model.BaseURL, ".runpod.ai/"):
		// Serverless endpoints scale from zero: a cold start can take minutes.
		firstToken = max(e.s.cfg.DefaultFirstTokenTimeout, 5*time.Minute)
	default:
		firstToken = e.s.cfg.DefaultFirstTokenTimeout
	}
	req := llm.Request{
		BaseURL: model.BaseURL, APIKey: model.APIKey, Model: model.ServedModelName, Messages: prompt,
		MaxTokens: g.reply.MaxTokens, ConnectTimeout: model.ConnectTimeout, FirstTokenTimeout: firstToken,
		IdleTimeout: e.s.cfg.ReplyIdleTimeout, ContinueFinalMessage: g.continuing,
	}
	var res llm.Result
	release, err := e.acquireModelSlot(g.ctx, model.ID)
	if err != nil {
		e.finish(g, res, err, promptTokens)
		return
	}
	defer release()
	retriedTimeout, retriedContext := false, false
	for {
		res, err = e.s.streamer.Stream(g.ctx, req, g.appendText)
		var upstreamErr *llm.Error
		if !errors.As(err, &upstreamErr) || !upstreamErr.BeforeFirstToken || g.ctx.Err() != nil {
			break
		}
		if (upstreamErr.Kind == llm.KindTimeout || upstreamErr.Kind == llm.KindConnection) && !retriedTimeout {
			retriedTimeout = true
			wait := retryDelay(e.s.cfg.RetryBackoff, 1, rand.Int64N)
			e.s.logger.Info("retrying reply after an upstream failure before the first token", "message_id", g.reply.ID, "retry_in", wait, "err", err)
			if sleepCtx(g.ctx, wait) != nil {
				break // stopped, or out of time, while waiting
			}
			continue
		}
		if upstreamErr.Kind == llm.KindContextLength && !retriedContext && len(g.history) > 1 {
			retriedContext = true
			var count llm.PromptCount
			prompt, count = buildPrompt(model, g.history, max(1, len(g.history)/2), e.s.promptCounter(g.ctx, model, g.continuing))
			promptTokens = count.Tokens
			req.Messages = prompt
			e.s.logger.Info("context too long; retrying with fewer messages", "message_id", g.reply.ID, "messages", len(prompt))
			continue
		}
		break
	}
	e.finish(g, res, err, promptTokens)
}

// outcome is how a generation ended, ready to be stored.
type outcome struct {
	status           string
	errorCode        string
	errorMessage     string
	promptTokens     int
	completionTokens int
	charge           int64
}

func (e *engine) outcomeOf(g *generation, res llm.Result, err error, promptEstimate int) outcome {
	g.mu.Lock()
	reason, chunks := g.stopReason, g.chunks
	g.mu.Unlock()
	o := outcome{promptTokens: promptEstimate, completionTokens: chunks}
	if res.Usage != nil {
		o.promptTokens, o.completionTokens = res.Usage.PromptTokens, res.Usage.CompletionTokens
	}
	var upstreamErr *llm.Error
	switch {
	case err == nil:
		o.status = StatusComplete
	case reason == stopByUser:
		o.status = StatusCancelled
	case reason == stopByShutdown:
		o.status, o.errorCode, o.errorMessage = StatusInterrupted, "interrupted", "The server restarted before the reply finished."
	case errors.Is(err, context.DeadlineExceeded) && g.ctx.Err() != nil:
		o.status, o.errorCode, o.errorMessage = StatusInterrupted, "interrupted", "The reply took too long and was stopped."
	case errors.Is(err, errModelBusy):
		o.status, o.errorCode, o.errorMessage = StatusError, luna.CodeUpstreamUnavailable, "The model is busy right now; try again in a moment."
	case errors.As(err, &upstreamErr):
		o.status, o.errorCode, o.errorMessage = StatusError, luna.CodeUpstreamUnavailable, upstreamErr.Message
		if upstreamErr.Kind == llm.KindContextLength {
			o.errorCode = luna.CodeInvalidRequest
		}
	default:
		o.status, o.errorCode, o.errorMessage = StatusError, luna.CodeUpstreamUnavailable, "The model server failed."
	}
	// Completed and stopped replies pay for the tokens used; failures and
	// interruptions pay nothing.
	if o.status == StatusComplete || o.status == StatusCancelled {
		if o.status == StatusCancelled && chunks == 0 {
			o.charge = 0
		} else {
			o.charge = g.model.Cost(int64(o.promptTokens + o.completionTokens))
		}
	} else {
		o.promptTokens, o.completionTokens = 0, 0
	}
	return o
}

var errLeaseLost = errors.New("generation lease lost")

// finish stores the end of a generation and settles its credits in one
// transaction, then tells the listeners.
func (e *engine) finish(g *generation, res llm.Result, err error, promptEstimate int) {
	if err != nil && !errors.Is(err, context.Canceled) {
		e.s.logger.Warn("reply failed", "message_id", g.reply.ID, "err", err)
	}
	o := e.outcomeOf(g, res, err, promptEstimate)
	g.mu.Lock()
	leaseLost := g.stopReason == stopLeaseLost
	text := string(g.text)
	g.mu.Unlock()

	var final Message
	var conv Conversation
	var convFound, published bool // published: the store's own statement notified
	if !leaseLost {
		var storeErr error
		for attempt := range 3 {
			final, conv, convFound, published, storeErr = e.store(g, o, text, res.FinishReason)
			if storeErr == nil || errors.Is(storeErr, errLeaseLost) {
				break
			}
			e.s.logger.Error("store finished reply", "message_id", g.reply.ID, "attempt", attempt+1, "err", storeErr)
			if sleepCtx(e.life, time.Duration(attempt+1)*200*time.Millisecond) != nil {
				break
			}
		}
		leaseLost = storeErr != nil
	}

	g.mu.Lock()
	if leaseLost {
		g.detached = true // another instance settled it, or the database is down: its row is the truth
	} else {
		g.final = &final
		g.status = final.Status
	}
	g.notify()
	g.mu.Unlock()
	e.mu.Lock()
	delete(e.gens, g.reply.ID)
	e.mu.Unlock()
	if leaseLost {
		return
	}

	ctx := e.life
	// The followers' signal, then the user's events, in one statement
	// (unless the store's own statement sent them).
	var b events.Batch
	if !published {
		b.Message(final.ID)
		b.User(final.UserID, events.MessageUpdated, final.ID)
	}
	if !convFound { // the reply no longer held it (rare): read it as it is
		var err error
		conv, err = e.s.GetConversation(ctx, final.UserID, final.ConversationID)
		if err == nil {
			b.User(final.UserID, events.ConversationUpdated, conv.ID)
			convFound = true
		}
	} else if !published {
		b.User(final.UserID, events.ConversationUpdated, conv.ID)
	}
	if !published {
		b.User(final.UserID, events.CreditsUpdated, "")
	}
	e.s.publishAll(ctx, &b)
	if convFound && final.Status == StatusComplete && conv.Title == "" {
		e.generateTitle(conv, g, text)
	}
}

// store commits the final state: message, credits and conversation
// together. It returns the message as stored and, when the reply still
// held its conversation, the conversation as released (found false when
// it did not, e.g. deleted meanwhile).
func (e *engine) store(g *generation, o outcome, text, finishReason string) (final Message, conv Conversation, found, published bool, err error) {
	ctx := e.life
	now := e.s.now()
	if e.s.db.Dialect == store.Postgres && g.reply.ReservationID != "" {
		final, conv, found, stored, err := e.storeAtOnce(ctx, g, o, text, finishReason, now)
		if stored {
			return final, conv, found, true, nil
		}
		if err != nil {
			// The transaction below is the authority: it finds the lease
			// lost if the statement did write after all.
			e.s.logger.Warn("store reply in one statement failed; storing step by step", "message_id", g.reply.ID, "err", err)
		}
	}
	err = e.s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if final, err = e.storeReplyTx(ctx, tx, g, o, text, finishReason, now); err != nil {
			return err
		}
		settled, err := e.settle(ctx, tx, g.reply.ReservationID, o.charge)
		if err != nil {
			return err
		}
		if settled.Charged != 0 || settled.Shortfall != 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE messages SET credits_charged = credits_charged + $2,
					credits_shortfall = credits_shortfall + $3 WHERE id = $1`,
				g.reply.ID, settled.Charged, settled.Shortfall); err != nil {
				return fmt.Errorf("record charge: %w", err)
			}
			final.CreditsCharged += settled.Charged
			final.CreditsShortfall += settled.Shortfall
		}
		// The conversation last, as a send takes the user's row before the
		// conversation's: the same order, so neither waits on the other
		// in a cycle.
		conv, found, err = releaseConversationTx(ctx, tx, g.reply, preview(text), now)
		return err
	})
	return final, conv, found, false, err
}

// storeAtOnce is store's usual case on PostgreSQL, written as one
// statement, so that a completion is one round trip with no transaction
// around it: the reply still leased to this instance, its hold active and
// covering its cost. The reply, the settlement (credits.SettleSteps), the
// conversation's release and the completion's notifications are all
// written, or, when that case does not apply, nothing (stored is false:
// store's transaction then finds out why and does what applies). The
// statement asserts that the settlement was written whole, so that a
// surprise fails it rather than half-writing it.
func (e *engine) storeAtOnce(ctx context.Context, g *generation, o outcome, text, finishReason string, now time.Time) (final Message, conv Conversation, convFound, stored bool, err error) {
	var args store.Args
	settle := e.s.ledger.SettleSteps(&args, g.reply.ReservationID, o.charge, "reply")
	var b events.Batch
	b.Message(g.reply.ID)
	b.User(g.reply.UserID, events.MessageUpdated, g.reply.ID)
	b.User(g.reply.UserID, events.CreditsUpdated, "")
	notify, published, err := e.s.bus.NotifyExpr(&b, &args)
	if err != nil {
		return Message{}, Conversation{}, false, false, err
	}
	var convEvent events.Batch // only when the reply still held its conversation
	convEvent.User(g.reply.UserID, events.ConversationUpdated, g.reply.ConversationID)
	notifyConv, _, err := e.s.bus.NotifyExpr(&convEvent, &args)
	if err != nil {
		return Message{}, Conversation{}, false, false, err
	}
	q := `WITH ` + settle.Lock + `,
		reply AS (` + e.storeReplySQL(&args, g, o, text, finishReason, now, o.charge, "EXISTS (SELECT 1 FROM settle_hold)") + `),
		` + settle.Settle + `,
		released AS (` + releaseSQL(&args, g.reply, preview(text), now, "EXISTS (SELECT 1 FROM reply)") + `)
		SELECT r.*, c.*, CAST(CASE WHEN ` + settle.Done + ` THEN '0' ELSE 'completion: settlement not written whole' END AS integer),
			concat(` + notify + `, CASE WHEN c.id IS NOT NULL THEN ` + notifyConv + ` END)
		FROM reply r LEFT JOIN released c ON true`
	var m Message
	var created, updated int64
	var c nullConversation
	var check int
	var notified string
	dest := append(messageDest(&m, &created, &updated), c.dest()...)
	err = e.s.db.QueryRowContext(ctx, q, args.Values()...).Scan(append(dest, &check, &notified)...)
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, Conversation{}, false, false, nil
	}
	if err != nil {
		return Message{}, Conversation{}, false, false, fmt.Errorf("store reply: %w", err)
	}
	m.CreatedAt, m.UpdatedAt = store.Time(created), store.Time(updated)
	conv, convFound = c.conversation()
	return m, conv, convFound, published, nil
}

// storeReplyTx writes a reply's final text, status and token counts,
// provided this instance still holds its lease (else errLeaseLost), and
// returns the message as stored.
func (e *engine) storeReplyTx(ctx context.Context, tx *sql.Tx, g *generation, o outcome, text, finishReason string, now time.Time) (Message, error) {
	var args store.Args
	final, err := scanMessage(tx.QueryRowContext(ctx, e.storeReplySQL(&args, g, o, text, finishReason, now, 0, "TRUE"), args.Values()...))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, errLeaseLost
	}
	if err != nil {
		return Message{}, fmt.Errorf("update reply: %w", err)
	}
	return final, nil
}

// storeReplySQL is the update that writes a reply's end (see storeReplyTx)
// and adds charged to what it was charged, provided condition holds, and
// returns it; its arguments are added to args. Token counts and charges
// add up: a continued reply pays for each run (new replies start from
// zero).
func (e *engine) storeReplySQL(args *store.Args, g *generation, o outcome, text, finishReason string, now time.Time, charged int64, condition string) string {
	at := args.Add(store.NowMillis(now))
	return `UPDATE messages SET content = ` + args.Add(text) + `, status = ` + args.Add(o.status) + `,
			prompt_tokens = prompt_tokens + ` + args.Add(o.promptTokens) + `,
			completion_tokens = completion_tokens + ` + args.Add(o.completionTokens) + `,
			finish_reason = ` + args.Add(finishReason) + `, error_code = ` + args.Add(o.errorCode) + `,
			error_message = ` + args.Add(o.errorMessage) + `, credits_charged = credits_charged + ` + args.Add(charged) + `,
			lease_owner = NULL, lease_expires_at = NULL, completed_at = ` + at + `, updated_at = ` + at + `
		WHERE id = ` + args.Add(g.reply.ID) + ` AND status IN ('pending', 'streaming') AND lease_owner = ` + args.Add(e.instanceID) + `
			AND ` + condition + `
		RETURNING ` + messageColumns
}

// releaseSQL is the update that ends reply's hold on its conversation (see
// releaseConversationTx), provided condition holds, and returns the
// conversation; its arguments are added to args.
func releaseSQL(args *store.Args, reply Message, lastPreview string, now time.Time, condition string) string {
	return `UPDATE conversations SET generating_message_id = NULL, updated_at = ` + args.Add(store.NowMillis(now)) + `,
			last_message_preview = COALESCE(NULLIF(` + args.Add(lastPreview) + `, ''), last_message_preview)
		WHERE id = ` + args.Add(reply.ConversationID) + ` AND generating_message_id = ` + args.Add(reply.ID) + ` AND ` + condition + `
		RETURNING ` + conversationColumns
}

// releaseConversationTx ends reply's hold on its conversation and returns
// the conversation as released; found is false when the reply no longer
// held it.
func releaseConversationTx(ctx context.Context, tx *sql.Tx, reply Message, lastPreview string, now time.Time) (Conversation, bool, error) {
	var args store.Args
	conv, err := scanConversation(tx.QueryRowContext(ctx, releaseSQL(&args, reply, lastPreview, now, "TRUE"), args.Values()...))
	if errors.Is(err, sql.ErrNoRows) {
		return Conversation{}, false, nil
	}
	if err != nil {
		return Conversation{}, false, fmt.Errorf("release conversation: %w", err)
	}
	return conv, true, nil
}

// settle charges the reply's cost: price × the usage the upstream
// reported, even beyond the hold (the overage comes from the available
// balance, never below zero; what it lacks is the shortfall). A hold that
// was voided meanwhile is charged from the available balance too, so a late
// completion still pays. A free model's reply has no hold and pays nothing.
// Any error, a refused settlement included, rolls the whole completion
// back.
func (e *engine) settle(ctx context.Context, tx *sql.Tx, reservationID string, charge int64) (credits.Settlement, error) {
	if reservationID == "" {
		return credits.Settlement{}, nil
	}
	s, err := e.s.ledger.SettleTx(ctx, tx, credits.SettleRequest{ReservationID: reservationID, Cost: charge})
	if err != nil {
		return s, fmt.Errorf("settle reply credits: %w", err)
	}
	return s, nil
}
