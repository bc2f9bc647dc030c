package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"luna/internal/store"
)

// channel is the PostgreSQL NOTIFY channel every instance listens on.
const channel = "luna_events"

// maxPayload is below PostgreSQL's 8000-byte NOTIFY limit.
const maxPayload = 7900

// NewPostgres returns a bus that publishes with pg_notify through db and
// receives on a dedicated connection to databaseURL, reconnecting when it
// drops. It runs until ctx ends; ready is closed once the first LISTEN
// succeeded (or ctx ended).
func NewPostgres(ctx context.Context, db *sql.DB, databaseURL string, logger *slog.Logger) (*Bus, <-chan struct{}) {
	b := NewPostgresPublisher(db)
	ready := make(chan struct{})
	go listen(ctx, databaseURL, b.hub, logger, ready)
	return b, ready
}

// NewPostgresPublisher returns a bus that only publishes (its subscribers
// get nothing): for admin commands that change what running servers show.
func NewPostgresPublisher(db *sql.DB) *Bus {
	publishAll := func(ctx context.Context, ns []notification) error {
		// One statement: SELECT pg_notify($1, $2), pg_notify($1, $3), …
		// (delivered in this order, as one transaction's notifications are).
		var args store.Args
		calls, err := notifyCalls(ns, &args)
		if err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, "SELECT "+calls, args.Values()...); err != nil {
			return fmt.Errorf("publish event: %w", err)
		}
		return nil
	}
	return &Bus{hub: newHub(), distributed: true, publishAll: publishAll, publish: func(ctx context.Context, n notification) error {
		return publishAll(ctx, []notification{n})
	}}
}

// notifyCalls writes ns as pg_notify calls, "pg_notify($1, $2), …", adding
// their arguments to args.
func notifyCalls(ns []notification, args *store.Args) (string, error) {
	var q strings.Builder
	channelArg := args.Add(channel)
	for i, n := range ns {
		payload, err := json.Marshal(n)
		if err != nil {
			return "", fmt.Errorf("encode event: %w", err)
		}
		if len(payload) > maxPayload {
			return "", fmt.Errorf("event %s for user %s is %d bytes, over the NOTIFY limit", eventType(n), n.UserID, len(payload))
		}
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("pg_notify(" + channelArg + ", " + args.Add(string(payload)) + ")")
	}
	return q.String(), nil
}

func eventType(n notification) string {
	if n.Change != nil {
		return n.Change.Type
	}
	if n.EndedSession != nil {
		return "session end"
	}
	return "message signals"
}

func listen(ctx context.Context, databaseURL string, h *hub, logger *slog.Logger, ready chan struct{}) {
	readyOnce := false
	markReady := func() {
		if !readyOnce {
			readyOnce = true
			close(ready)
		}
	}
	defer markReady()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := listenOnce(ctx, databaseURL, h, markReady)
		if ctx.Err() != nil {
			return
		}
		logger.Warn("event listener lost its connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func listenOnce(ctx context.Context, databaseURL string, h *hub, connected func()) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	connected()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("wait: %w", err)
		}
		var msg notification
		if err := json.Unmarshal([]byte(n.Payload), &msg); err != nil {
			continue // not ours
		}
		h.dispatch(msg)
	}
}
