package chat

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"luna/internal/credits"
	"luna/internal/events"
	"luna/internal/llm"
	"luna/internal/store"
)

// Recover interrupts the replies left running by instances that are gone
// and releases their credit holds. Call it once at start-up, before the
// credit expiry sweeper starts: after a long outage those holds have
// expired too, and the interruption, not the sweeper, should settle them
// (settling is all or nothing, so whichever comes first wins anyway).
func (s *Service) Recover(ctx context.Context) {
	// One process owns a SQLite database: every running reply left in it
	// belongs to a process that is gone. On PostgreSQL, those whose lease
	// lapsed.
	interrupt := s.interruptExpired
	if s.db.Dialect == store.SQLite {
		interrupt = s.interruptAllOthers
	}
	n, err := interrupt(ctx)
	if err != nil {
		s.logger.Error("interrupt orphaned replies", "err", err)
	} else if n > 0 {
		s.logger.Info("interrupted replies left by a previous run", "count", n)
	}
}

// Run persists running replies in batches, renews their leases and credit
// holds, picks up stops asked on other instances, and interrupts orphaned
// generations (whose instance died), until ctx ends. Call it once per
// process, after Recover.
func (s *Service) Run(ctx context.Context) {
	flush := time.NewTicker(s.cfg.FlushInterval)
	defer flush.Stop()
	sweep := time.NewTicker(s.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			if err := s.engine.flush(ctx); err != nil && ctx.Err() == nil {
				s.logger.Error("persist running replies", "err", err)
			}
		case <-sweep.C:
			// Each run is bounded, so that a stuck query cannot stall
			// the loop (and the flushes it runs) for long.
			runCtx, cancel := context.WithTimeout(ctx, max(s.cfg.SweepInterval, minSweepTimeout))
			_, err := s.interruptExpired(runCtx)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.logger.Error("interrupt orphaned replies", "err", err)
			}
		}
	}
}

// flush writes the new text of every running reply in one batch and renews
// the leases that are due, then signals other instances' listeners.
func (e *engine) flush(ctx context.Context) error {
	now := e.s.now()
	var batch []flushPending
	e.mu.Lock()
	for _, g := range e.gens {
		g.mu.Lock()
		dirty := len(g.text) > g.persisted
		leaseDue := now.Sub(g.leaseAt) >= e.s.cfg.LeaseRenewEvery
		// The credit hold lives as long as the lease: it is renewed well
		// before it could expire, so only an orphaned reply's hold does.
		holdDue := g.reply.ReservationID != "" && now.Sub(g.holdAt) >= e.s.cfg.ReservationTTL/4
		if (dirty || leaseDue || holdDue) && g.final == nil && !g.detached {
			batch = append(batch, flushPending{g: g, text: string(g.text), status: g.status, upTo: len(g.text),
				grew: dirty, holdDue: holdDue, reserved: g.reply.ReservationID})
		}
		g.mu.Unlock()
	}
	e.mu.Unlock()

	if len(batch) > 0 {
		rows := make([]flushRow, len(batch))
		var grown []string // one signal for the whole batch: listeners on other instances read the new text
		for i, p := range batch {
			rows[i] = flushRow{id: p.g.reply.ID, content: p.text, status: p.status}
			if p.grew {
				grown = append(grown, p.g.reply.ID)
			}
		}
		if e.s.db.Dialect == store.Postgres {
			return e.flushAtOnce(ctx, batch, rows, grown, now)
		}
		updated, err := e.persist(ctx, rows, now)
		if err != nil {
			return err
		}
		e.afterPersist(ctx, batch, updated, now)
		if e.s.bus.Distributed() {
			if err := e.s.bus.PublishMessages(ctx, grown); err != nil {
				e.s.logger.Warn("publish message signals", "err", err)
			}
		}
	}
	return e.pollStops(ctx)
}

// flushPending is a running reply's state taken for a flush.
type flushPending struct {
	g        *generation
	text     string
	status   string
	upTo     int
	grew     bool // text beyond what was persisted
	holdDue  bool
	reserved string
}

// afterPersist renews the holds that are due, records what was persisted
// and stops the generations whose rows were not updated (lost).
func (e *engine) afterPersist(ctx context.Context, batch []flushPending, updated map[string]bool, now time.Time) {
	var holds []string
	var lost []*generation
	for _, p := range batch {
		switch {
		case !updated[p.g.reply.ID]:
			lost = append(lost, p.g)
		case p.holdDue:
			holds = append(holds, p.reserved)
		}
	}
	if len(holds) > 0 {
		if _, err := e.s.ledger.RenewHolds(ctx, holds, e.s.cfg.ReservationTTL); err != nil {
			e.s.logger.Warn("renew credit holds of running replies", "err", err) // tried again at the next flush
		} else {
			for _, p := range batch {
				if p.holdDue && updated[p.g.reply.ID] {
					p.g.mu.Lock()
					p.g.holdAt = now
					p.g.mu.Unlock()
				}
			}
		}
	}
	for _, p := range batch {
		p.g.mu.Lock()
		p.g.persisted = max(p.g.persisted, p.upTo)
		p.g.leaseAt = now
		p.g.mu.Unlock()
	}
	for _, g := range lost {
		// Usually the reply finished between the batch and its write;
		// otherwise another instance, thinking this one dead, has
		// interrupted it: stop generating.
		var status string
		var owner sql.NullString
		err := e.s.db.QueryRowContext(ctx, `SELECT status, lease_owner FROM messages WHERE id = $1`, g.reply.ID).Scan(&status, &owner)
		interruptedElsewhere := status == StatusInterrupted || (Running(status) && owner.String != e.instanceID)
		if err != nil || !interruptedElsewhere {
			continue // finished here meanwhile: its row is final
		}
		e.s.logger.Warn("reply lease lost; stopping its generation", "message_id", g.reply.ID, "status", status)
		g.stop(stopLeaseLost)
	}
}

// flushAtOnce is a flush on PostgreSQL in one statement, however many
// replies run: it writes their text and renews their leases (as persist
// does), signals the grown ones to other instances' listeners (pg_notify
// in the statement) and reads the stops asked for elsewhere (as
// pollStops does).
func (e *engine) flushAtOnce(ctx context.Context, batch []flushPending, rows []flushRow, grown []string, now time.Time) error {
	var args store.Args
	ids, contents, statuses := make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows))
	for i, r := range rows {
		ids[i], contents[i], statuses[i] = r.id, r.content, r.status
	}
	owner := args.Add(e.instanceID)
	q := `WITH persisted AS (UPDATE messages AS m
			SET content = u.content, status = u.status, updated_at = ` + args.Add(store.NowMillis(now)) + `,
				lease_expires_at = ` + args.Add(store.NowMillis(now.Add(e.s.cfg.LeaseTTL))) + `
			FROM unnest(` + args.Add(ids) + `::text[], ` + args.Add(contents) + `::text[], ` + args.Add(statuses) + `::text[]) AS u(id, content, status)
			WHERE m.id = u.id AND m.lease_owner = ` + owner + ` AND m.status IN ('pending', 'streaming')
			RETURNING m.id)
		SELECT 'persisted', id FROM persisted
		UNION ALL SELECT 'stop', id FROM (` + strings.Replace(stopRequestsSQL, "$1", owner, 1) + `) AS stops`
	var signals events.Batch
	signals.Messages(grown)
	notify, inStatement, err := e.s.bus.NotifyExpr(&signals, &args)
	if err != nil {
		e.s.logger.Warn("publish message signals", "err", err)
	} else if inStatement {
		q += `
		UNION ALL SELECT 'notified', ` + notify
	}
	result, err := e.s.db.QueryContext(ctx, q, args.Values()...)
	if err != nil {
		return fmt.Errorf("flush running replies: %w", err)
	}
	defer result.Close()
	updated := make(map[string]bool, len(rows))
	var stops []string
	for result.Next() {
		var kind, id string
		if err := result.Scan(&kind, &id); err != nil {
			return fmt.Errorf("flush running replies: %w", err)
		}
		switch kind {
		case "persisted":
			updated[id] = true
		case "stop":
			stops = append(stops, id)
		}
	}
	if err := result.Err(); err != nil {
		return fmt.Errorf("flush running replies: %w", err)
	}
	e.afterPersist(ctx, batch, updated, now)
	for _, id := range stops {
		if g := e.get(id); g != nil {
			g.stop(stopByUser)
		}
	}
	return nil
}

// flushRow is one running reply's text to persist.
type flushRow struct {
	id, content, status string
}

// persist writes the rows and renews their leases, and returns the ids it
// updated (rows of other owners, or finished, are left alone), in one
// transaction: SQLite's flush (PostgreSQL's is flushAtOnce, one statement).
func (e *engine) persist(ctx context.Context, rows []flushRow, now time.Time) (map[string]bool, error) {
	updated := make(map[string]bool, len(rows))
	updatedAt, leaseUntil := store.NowMillis(now), store.NowMillis(now.Add(e.s.cfg.LeaseTTL))
	err := e.s.db.InTx(ctx, func(tx *sql.Tx) error {
		clear(updated)
		for _, r := range rows {
			res, err := tx.ExecContext(ctx, `UPDATE messages SET content = $2, status = $3, updated_at = $4, lease_expires_at = $5
				WHERE id = $1 AND lease_owner = $6 AND status IN ('pending', 'streaming')`,
				r.id, r.content, r.status, updatedAt, leaseUntil, e.instanceID)
			if err != nil {
				return fmt.Errorf("persist reply %s: %w", r.id, err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				updated[r.id] = true
			}
		}
		return nil
	})
	return updated, err
}

// stopRequestsSQL lists the running replies of instance $1 whose stop was
// asked on another instance.
const stopRequestsSQL = `SELECT id FROM messages WHERE lease_owner = $1 AND cancel_requested = TRUE
	AND status IN ('pending', 'streaming')`

// pollStops stops local generations whose stop was asked on another
// instance.
func (e *engine) pollStops(ctx context.Context) error {
	e.mu.Lock()
	n := len(e.gens)
	e.mu.Unlock()
	if n == 0 {
		return nil
	}
	rows, err := e.s.db.QueryContext(ctx, stopRequestsSQL, e.instanceID)
	if err != nil {
		return fmt.Errorf("poll stop requests: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("poll stop requests: %w", err)
		}
		if g := e.get(id); g != nil {
			g.stop(stopByUser)
		}
	}
	return rows.Err()
}

// minSweepTimeout is the least time a sweep run gets, however short the
// sweep interval (tests use very short ones).
const minSweepTimeout = 10 * time.Second

// interruptExpired marks running replies of other instances whose lease
// expired interrupted, keeping their persisted text, and releases their
// credits. This instance's own replies are alive while it runs, even when a
// slow database delayed their renewal.
func (s *Service) interruptExpired(ctx context.Context) (int, error) {
	return s.interruptOrphans(ctx, `lease_expires_at < {now}`, 200)
}

// interruptAllOthers interrupts every running reply not owned by this
// process, whatever its lease: with SQLite one process owns the database,
// so they were all left by a previous run.
func (s *Service) interruptAllOthers(ctx context.Context) (int, error) {
	return s.interruptOrphans(ctx, `TRUE`, 1000)
}

// interruptOrphans interrupts up to limit running replies, not of this
// process, that orphan selects ({now} stands for the current time).
func (s *Service) interruptOrphans(ctx context.Context, orphan string, limit int) (int, error) {
	now := store.NowMillis(s.now())
	query := `SELECT id FROM messages WHERE status IN ('pending', 'streaming') AND COALESCE(lease_owner, '') <> $1
		AND ` + strings.ReplaceAll(orphan, "{now}", "$2") + ` LIMIT ` + strconv.Itoa(limit)
	args := []any{s.engine.instanceID}
	if strings.Contains(orphan, "{now}") {
		args = append(args, now)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("find orphaned replies: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	count := 0
	for _, id := range ids {
		m, ok, err := s.interruptOrphan(ctx, id, now, orphan)
		if err != nil {
			return count, err
		}
		if !ok {
			continue
		}
		count++
		s.logger.Info("interrupted an orphaned reply", "message_id", id)
		var b events.Batch
		b.Message(id)
		b.User(m.UserID, events.MessageUpdated, m.ID)
		b.User(m.UserID, events.ConversationUpdated, m.ConversationID)
		b.User(m.UserID, events.CreditsUpdated, "")
		s.publishAll(ctx, &b)
	}
	return count, nil
}

func (s *Service) interruptOrphan(ctx context.Context, id string, now int64, orphan string) (Message, bool, error) {
	var m Message
	ok := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		// Still running, not of this process, and still an orphan.
		res, err := tx.ExecContext(ctx, `UPDATE messages SET status = 'interrupted', error_code = 'interrupted',
				error_message = 'The server stopped before the reply finished.', lease_owner = NULL,
				lease_expires_at = NULL, completed_at = $3, updated_at = $3
			WHERE id = $1 AND status IN ('pending', 'streaming') AND COALESCE(lease_owner, '') <> $2
			AND `+strings.ReplaceAll(orphan, "{now}", "$3"), id, s.engine.instanceID, now)
		if err != nil {
			return fmt.Errorf("interrupt reply %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // finished or taken care of meanwhile
		}
		if m, err = getMessage(ctx, tx, id); err != nil {
			return err
		}
		if m.ReservationID != "" {
			// Releases the hold, or does nothing when the expiry sweeper
			// voided it first; a refusal rolls the interruption back.
			if _, err := s.ledger.SettleTx(ctx, tx, credits.SettleRequest{ReservationID: m.ReservationID}); err != nil {
				return fmt.Errorf("release credits of reply %s: %w", id, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE conversations SET generating_message_id = NULL, updated_at = $3
			WHERE id = $1 AND generating_message_id = $2`, m.ConversationID, id, now); err != nil {
			return fmt.Errorf("release conversation: %w", err)
		}
		ok = true
		return nil
	})
	return m, ok, err
}

// Shutdown stops accepting sends, lets running replies finish until ctx
// ends, then interrupts the rest (their credits are released) and waits for
// them to be stored.
func (s *Service) Shutdown(ctx context.Context) {
	e := s.engine
	e.mu.Lock()
	e.stopping = true
	e.mu.Unlock()
	done := make(chan struct{})
	go func() {
		e.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	e.mu.Lock()
	for _, g := range e.gens {
		g.stop(stopByShutdown)
	}
	e.mu.Unlock()
	<-done
}

// Cancel stops a reply. The reply keeps its partial text and is charged for
// what was generated. It waits briefly for the reply to be stored and
// returns its state; stopping a finished reply returns it unchanged.
func (s *Service) Cancel(ctx context.Context, userID, messageID string) (Message, error) {
	m, err := s.GetMessage(ctx, userID, messageID)
	if err != nil {
		return m, err
	}
	if m.Role != "assistant" || !Running(m.Status) {
		return m, nil
	}
	sub := s.bus.SubscribeMessage(messageID)
	defer sub.Close()
	var changed <-chan struct{}
	if g := s.engine.get(messageID); g != nil {
		g.stop(stopByUser)
		_, _, _, changed = g.snapshot(0)
	} else if _, err := s.db.ExecContext(ctx, `UPDATE messages SET cancel_requested = TRUE
		WHERE id = $1 AND status IN ('pending', 'streaming')`, messageID); err != nil {
		return m, fmt.Errorf("request stop: %w", err)
	}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		if m, err = s.GetMessage(ctx, userID, messageID); err != nil || !Running(m.Status) {
			return m, err
		}
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-deadline.C:
			return m, nil
		case <-changed:
			changed = nil
		case <-sub.C:
		case <-poll.C:
		}
	}
}

// generateTitle names a conversation after its first reply, with the same
// model, not charged to the user; it falls back to the first words of the
// user's message.
func (e *engine) generateTitle(conv Conversation, g *generation, reply string) {
	e.running.Add(1)
	go func() {
		defer e.running.Done()
		question := "" // the last question (a continued reply's history ends with the reply)
		for i := len(g.history) - 1; i >= 0 && question == ""; i-- {
			if g.history[i].Role == "user" {
				question = g.history[i].Content
			}
		}
		ctx, cancel := context.WithTimeout(e.life, e.s.cfg.TitleTimeout)
		defer cancel()
		var b strings.Builder
		// A title asks the model like a reply does: it takes one of the
		// model's upstream slots, or falls back when none frees in time.
		release, err := e.acquireModelSlot(ctx, g.model.ID)
		if err == nil {
			_, err = e.s.streamer.Stream(ctx, llm.Request{
				BaseURL: g.model.BaseURL, APIKey: g.model.APIKey, Model: g.model.ServedModelName, MaxTokens: 20,
				ConnectTimeout: g.model.ConnectTimeout, FirstTokenTimeout: e.s.cfg.TitleTimeout,
				Messages: []llm.Message{{Role: "user", Content: "Write a short title (at most 6 words) for this conversation. " +
					"Reply with the title only, no quotes.\n\nUser: " + truncateRunes(question, 1000) +
					"\n\nAssistant: " + truncateRunes(reply, 1000)}},
			}, func(t string) { b.WriteString(t) })
			release()
		}
		title := cleanGeneratedTitle(b.String())
		if err != nil || title == "" {
			if err != nil {
				e.s.logger.Info("title generation failed; using the first words", "conversation_id", conv.ID, "err", err)
			}
			title = fallbackTitle(question)
		}
		bg := e.life
		res, err := e.s.db.ExecContext(bg, `UPDATE conversations SET title = $2, title_generated = TRUE
			WHERE id = $1 AND title = ''`, conv.ID, title)
		if err != nil {
			e.s.logger.Error("store title", "err", err)
			return
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return // renamed meanwhile
		}
		e.s.publish(bg, conv.UserID, events.ConversationUpdated, conv.ID)
	}()
}

func cleanGeneratedTitle(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimPrefix(strings.TrimSpace(s), "Title:")
	s = strings.Trim(strings.TrimSpace(s), "\"'“”*#`. ")
	s = strings.Join(strings.Fields(s), " ")
	return truncateRunes(s, 80)
}

func fallbackTitle(question string) string {
	words := strings.Fields(question)
	if len(words) > 6 {
		words = words[:6]
	}
	title := truncateRunes(strings.Join(words, " "), 60)
	if title == "" {
		return "New conversation"
	}
	return title
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}
