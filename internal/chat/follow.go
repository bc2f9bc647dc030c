package chat

import (
	"context"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// Stream event kinds, as sent over SSE.
const (
	EventSnapshot  = "snapshot"  // the text so far (first event, unless resuming)
	EventDelta     = "delta"     // new text; Offset is the byte length reached
	EventDone      = "done"      // finished: complete or cancelled
	EventError     = "error"     // failed or interrupted
	EventHeartbeat = "heartbeat" // nothing new; keeps proxies from closing the stream
	EventDeleted   = "deleted"   // the conversation was deleted while the stream was open (no final event was seen)
)

// StreamEvent is one event of a reply's live text.
type StreamEvent struct {
	Kind    string
	Offset  int      // byte length of the text up to this event (the SSE id)
	Text    string   // snapshot: all text so far; delta: the new text
	Message *Message // done and error: the final message
}

// resumeOffset parses a Last-Event-ID against the text known so far: it
// must be a byte offset on a character boundary, not beyond the text unless
// the reply is still running (then another instance may have shown text
// that is not persisted yet).
func resumeOffset(lastEventID string, text string, running bool) (int, bool) {
	if lastEventID == "" {
		return 0, false
	}
	n, err := strconv.Atoi(lastEventID)
	if err != nil || n < 0 {
		return 0, false
	}
	if n > len(text) {
		return n, running
	}
	return n, n == len(text) || utf8.RuneStart(text[n])
}

// Follow streams a reply's text to send: a snapshot (or, with a valid
// lastEventID, exactly the bytes after it), deltas as they arrive, then done
// or error. It works for replies generated here (fed from memory, token by
// token) and elsewhere (fed from the database as it is persisted). It
// returns when the reply is over, ctx ends, or send fails.
func (s *Service) Follow(ctx context.Context, userID, messageID, lastEventID string, send func(StreamEvent) error) error {
	sub := s.bus.SubscribeMessage(messageID)
	defer sub.Close()
	// A generation running here is kept once found: it holds the final
	// message after it leaves the engine, so a listener here always gets
	// the final event, even when the conversation is deleted right after.
	// Found at the start, it is also where the stream starts: its owner and
	// its text are in memory (the database is behind it), so opening the
	// stream reads nothing.
	g := s.engine.get(messageID)
	var content string
	var running bool
	if g != nil {
		text, final, detached, _ := g.snapshot(0)
		if detached { // its row is the truth
			g = nil
		} else if g.reply.UserID != userID {
			return ErrMessageNotFound // as the database would answer
		}
		content, running = string(text), final == nil
	}
	if g == nil {
		m, err := s.GetMessage(ctx, userID, messageID)
		if err != nil {
			return err
		}
		content, running = m.Content, Running(m.Status)
	}
	offset, resumed := resumeOffset(lastEventID, content, running)
	if !resumed {
		offset = len(content)
		if err := send(StreamEvent{Kind: EventSnapshot, Offset: offset, Text: content}); err != nil {
			return err
		}
	}
	heartbeat := time.NewTicker(s.cfg.HeartbeatEvery)
	defer heartbeat.Stop()
	// A safety net for lost signals (a dropped LISTEN connection).
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()

	for {
		var changed <-chan struct{}
		if g == nil {
			g = s.engine.get(messageID)
		}
		if g != nil {
			text, final, detached, ch := g.snapshot(offset)
			if len(text) > 0 {
				offset += len(text)
				if err := send(StreamEvent{Kind: EventDelta, Offset: offset, Text: string(text)}); err != nil {
					return err
				}
			}
			if final != nil {
				return sendFinal(send, *final, offset)
			}
			if !detached {
				changed = ch
			}
		}
		if changed == nil {
			// Generated elsewhere (or finished): read what is persisted.
			m, err := getMessage(ctx, s.db.DB, messageID)
			if errors.Is(err, ErrMessageNotFound) {
				// Its conversation was deleted (after the reply was
				// stopped): say so, and end.
				return send(StreamEvent{Kind: EventDeleted, Offset: offset})
			} else if err != nil {
				return err
			}
			if len(m.Content) > offset {
				delta := m.Content[offset:]
				offset = len(m.Content)
				if err := send(StreamEvent{Kind: EventDelta, Offset: offset, Text: delta}); err != nil {
					return err
				}
			}
			if !Running(m.Status) {
				if offset > len(m.Content) {
					// The client saw text that was never stored: start over.
					offset = len(m.Content)
					if err := send(StreamEvent{Kind: EventSnapshot, Offset: offset, Text: m.Content}); err != nil {
						return err
					}
				}
				return sendFinal(send, m, offset)
			}
		}
		beat := false
		if changed != nil {
			// Generating here: memory signals each token (a select over
			// fewer channels, as it runs once a token).
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
			case <-heartbeat.C:
				beat = true
			}
		} else {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-sub.C:
			case <-poll.C:
			case <-heartbeat.C:
				beat = true
			}
		}
		if beat {
			if err := send(StreamEvent{Kind: EventHeartbeat, Offset: offset}); err != nil {
				return err
			}
		}
	}
}

func sendFinal(send func(StreamEvent) error, m Message, offset int) error {
	kind := EventDone
	if m.Status == StatusError || m.Status == StatusInterrupted {
		kind = EventError
	}
	return send(StreamEvent{Kind: kind, Offset: offset, Message: &m})
}
