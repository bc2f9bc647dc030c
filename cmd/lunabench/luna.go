package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"luna/internal/accounts"
	"luna/internal/api"
	"luna/internal/app"
	"luna/internal/chat"
)

// benchModelID is the id of the model that points Luna at the fake upstream.
const benchModelID = "bench"

// lunaServer is a whole Luna (app.New) started in this process, serving
// real HTTP on loopback, with the fake upstream as its only model.
type lunaServer struct {
	app      *app.App
	url      string
	cancel   context.CancelFunc
	served   chan error // Serve's result
	warnings *atomic.Int64
}

// lunaOptions is how the benchmark sets Luna up.
type lunaOptions struct {
	dataDir     string
	databaseURL string // empty: SQLite in dataDir
	upstreamURL string
	tokens      int // per reply
	// perUser is the replies one user runs at once (Luna's limit is set
	// to it); modelSlots the upstream requests Luna runs at once.
	perUser, modelSlots int
	logs                io.Writer
}

// startLuna starts Luna with a models file that points at the upstream.
// Credits never run out and the sign-up rate limit never bites; the chat
// engine keeps its defaults but for the two limits in opts.
func startLuna(ctx context.Context, opts lunaOptions) (*lunaServer, error) {
	dataDir, tokens := opts.dataDir, opts.tokens
	modelsFile := filepath.Join(dataDir, "models.toml")
	models := fmt.Sprintf(`[[model]]
id = %q
name = "lunabench fake upstream"
base_url = %q
served_model_name = %q
context_tokens = %d
max_output_tokens = %d
first_token_timeout = "2m"
`, benchModelID, opts.upstreamURL, upstreamModel, tokens+4096, tokens+100)
	if err := os.WriteFile(modelsFile, []byte(models), 0o600); err != nil {
		return nil, err
	}
	warnings := new(atomic.Int64)
	logger := slog.New(&logTally{Handler: slog.NewTextHandler(opts.logs, nil), count: warnings})
	a, err := app.New(ctx, app.Config{
		Addr: "127.0.0.1:0", DataDir: dataDir, DatabaseURL: opts.databaseURL,
		Auth: api.AuthLocal, SignupMode: accounts.SignupOpen, InitialCredits: 1_000_000_000,
		AuthRateLimit: 1_000_000, ModelsFile: modelsFile, Logger: logger,
		Chat: chat.Config{MaxRunningPerUser: opts.perUser, MaxRunningPerModel: opts.modelSlots},
	})
	if err != nil {
		return nil, fmt.Errorf("start luna: %w", err)
	}
	ln, err := a.Listen()
	if err != nil {
		a.Close()
		return nil, err
	}
	serveCtx, cancel := context.WithCancel(ctx)
	s := &lunaServer{app: a, url: "http://" + ln.Addr().String(), cancel: cancel, served: make(chan error, 1), warnings: warnings}
	go func() { s.served <- a.Serve(serveCtx, ln) }()
	return s, nil
}

// stop shuts Luna down gracefully and closes its database.
func (s *lunaServer) stop() error {
	s.cancel()
	err := <-s.served
	return errors.Join(err, s.app.Close())
}

// conversation is one benchmark conversation and its owner's bearer token.
type conversation struct {
	id    string
	token string
}

// setup signs up ceil(n/perUser) users and creates n conversations with
// the benchmark model, perUser per user. The conversations get a title, so
// that no title request follows the first reply: titles are a one-off cost
// per conversation, not part of streaming.
func (s *lunaServer) setup(ctx context.Context, client *http.Client, n, perUser int, workers int) ([]conversation, error) {
	users := (n + perUser - 1) / perUser
	tokens := make([]string, users)
	// Sign-up hashes the password with argon2id (19 MiB, tens of
	// milliseconds): no point running more at once than there are cores.
	err := parallel(ctx, users, workers, func(i int) error {
		var session struct {
			Token string `json:"token"`
		}
		err := postJSON(ctx, client, s.url+"/v1/auth/signup", "", map[string]string{
			"email": fmt.Sprintf("bench-%d@example.com", i), "password": "lunabench-password", "name": fmt.Sprintf("Bench %d", i),
		}, &session)
		tokens[i] = session.Token
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sign up: %w", err)
	}
	convs := make([]conversation, n)
	err = parallel(ctx, n, 16, func(i int) error {
		var c struct {
			ID string `json:"id"`
		}
		token := tokens[i/perUser]
		err := postJSON(ctx, client, s.url+"/v1/conversations", token,
			map[string]string{"modelId": benchModelID, "title": "Bench " + strconv.Itoa(i)}, &c)
		convs[i] = conversation{id: c.ID, token: token}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create conversations: %w", err)
	}
	return convs, nil
}

// lunaClient sends one message per conversation and follows its reply,
// as a browser would.
type lunaClient struct {
	http   *http.Client
	url    string
	convs  []conversation
	tokens int
}

// streamDone is the data of a stream's done and error events.
type streamDone struct {
	Status string `json:"status"`
	Usage  struct {
		CompletionTokens int `json:"completionTokens"`
	} `json:"usage"`
	FinishReason string `json:"finishReason"`
	Error        *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// stream sends a message in conversation i and reads its reply's event
// stream to the end; the clock starts just before the send.
func (c *lunaClient) stream(ctx context.Context, i int, rec *streamRecord) error {
	conv := c.convs[i]
	var sent struct {
		AssistantMessage struct {
			ID string `json:"id"`
		} `json:"assistantMessage"`
	}
	rec.start = time.Now()
	err := postJSON(ctx, c.http, c.url+"/v1/conversations/"+conv.id+"/messages", conv.token,
		map[string]string{"content": "Benchmark message " + strconv.Itoa(i) + "."}, &sent)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	rec.send = time.Since(rec.start)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/v1/messages/"+sent.AssistantMessage.ID+"/stream", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+conv.token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stream answered %s", resp.Status)
	}
	sse := newSSEReader(resp.Body)
	for {
		ev, err := sse.next()
		at := time.Now()
		if errors.Is(err, io.EOF) {
			return errors.New("event stream ended without done")
		}
		if err != nil {
			return fmt.Errorf("read event stream: %w", err)
		}
		switch ev.name {
		case "snapshot":
			var data struct {
				Content string `json:"content"`
			}
			if err := json.Unmarshal(ev.data, &data); err != nil {
				return fmt.Errorf("decode snapshot: %w", err)
			}
			rec.replace(at, data.Content)
		case "delta":
			var data struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal(ev.data, &data); err != nil {
				return fmt.Errorf("decode delta: %w", err)
			}
			rec.add(at, data.Text)
		case "done", "error":
			rec.end = at
			var done streamDone
			if err := json.Unmarshal(ev.data, &done); err != nil {
				return fmt.Errorf("decode %s: %w", ev.name, err)
			}
			if ev.name == "error" || done.Status != "complete" || done.Usage.CompletionTokens != c.tokens {
				return fmt.Errorf("reply ended with %s: status %q, completionTokens %d (want %d), error %+v",
					ev.name, done.Status, done.Usage.CompletionTokens, c.tokens, done.Error)
			}
			return rec.check()
		default:
			continue
		}
		// Each event's id is the byte length of the text reached: a
		// mismatch means text was lost or repeated on the way.
		if ev.id != strconv.Itoa(len(rec.text)) {
			return fmt.Errorf("%w: %s event id %s after %d bytes", errWrongText, ev.name, ev.id, len(rec.text))
		}
	}
}

// logTally passes Luna's warnings and errors on (the first few) and counts
// them all.
type logTally struct {
	slog.Handler
	count *atomic.Int64
}

// maxShownLogs is how many of Luna's warnings are printed.
const maxShownLogs = 10

func (h *logTally) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelWarn }

func (h *logTally) Handle(ctx context.Context, r slog.Record) error {
	if h.count.Add(1) > maxShownLogs {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h *logTally) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logTally{Handler: h.Handler.WithAttrs(attrs), count: h.count}
}

func (h *logTally) WithGroup(name string) slog.Handler {
	return &logTally{Handler: h.Handler.WithGroup(name), count: h.count}
}

// parallel runs fn(0..n-1) on at most workers goroutines and returns the
// first error; after one, the remaining calls are skipped.
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
		failed   atomic.Bool
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
