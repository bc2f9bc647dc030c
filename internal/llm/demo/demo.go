// Package demo is Luna's built-in demo text model: an HTTP handler that
// speaks the same wire protocol as vLLM (OpenAI-compatible chat completions,
// streamed byte for byte like vLLM, or not streamed) and answers with
// placeholder text that says it is a demo. When no text model is
// configured, Luna serves it in-process (package inprocess), reachable by its
// own model client only, so that the first run works without a GPU and still
// goes through the real client code (DESIGN.md section 2.1).
//
// Replies are deterministic: the same conversation gets the same reply. They
// are a few dozen words long and contain a markdown list and a code span, to
// exercise the renderers. A request whose last user message contains
// "Write a short title" gets a title of at most six words instead.
package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"luna/internal/llm"
	"luna/internal/llm/vllmwire"
)

// ModelName is the served model name of the demo model.
const ModelName = "luna-demo"

// MaxModelLen is the demo model's context length in tokens; longer prompts
// get vLLM's context-length error. The demo's tokenizer is the byte bound
// Luna uses when a server has no tokenizer (llm.EstimatePromptTokens), so
// its POST /tokenize, its usage.prompt_tokens and its context check agree
// with each other and with Luna's own estimate.
const MaxModelLen = 32768

// TitleRequestMarker, found in the last user message, asks for a title.
const TitleRequestMarker = "Write a short title"

const (
	defaultTokensPerSecond = 25
	maxBodyBytes           = 8 << 20
	maxTitleWords          = 5
	quoteChars             = 80
)

// Options configures the demo handler.
type Options struct {
	// TokensPerSecond paces streamed chunks (default 25).
	TokensPerSecond float64
	// Logger receives one debug line per completion (nil discards).
	Logger *slog.Logger
}

// handler serves the demo model.
type handler struct {
	delay  time.Duration
	logger *slog.Logger
	seq    atomic.Uint64
	start  int64
}

// NewHandler returns the demo model's handler. It serves
// POST /chat/completions (streaming and not) and GET /models relative to
// where it is mounted: mount it with http.StripPrefix, e.g. under "/v1"
// so that its base URL is http://host/v1.
func NewHandler(opts Options) http.Handler {
	tps := opts.TokensPerSecond
	if tps <= 0 {
		tps = defaultTokensPerSecond
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{
		delay:  time.Duration(float64(time.Second) / tps),
		logger: logger,
		start:  time.Now().Unix(),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /chat/completions", h.chatCompletions)
	mux.HandleFunc("GET /models", h.models)
	return mux
}

// NewServer returns the demo model as a whole server, laid out like vLLM:
// the OpenAI-compatible routes under /v1 (NewHandler) and POST /tokenize at
// the root. Its base URL is the server's address plus "/v1".
func NewServer(opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", NewHandler(opts)))
	mux.HandleFunc("POST /tokenize", tokenize)
	return mux
}

// tokenize answers vLLM's POST /tokenize chat form
// {"model","messages","add_generation_prompt"} (and the completion form
// {"prompt"}) with {"count","max_model_len","tokens","token_strs"}. The
// demo tokenizer is byte-level: one token per byte of content, plus the
// chat template's tokens.
func tokenize(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Prompt   *string `json:"prompt"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err == nil {
		err = json.Unmarshal(body, &in)
	}
	if err != nil || (in.Prompt == nil && len(in.Messages) == 0) {
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{
			Message: "The request needs a prompt or messages.", Type: "BadRequestError", Code: http.StatusBadRequest})
		return
	}
	var count int
	if in.Prompt != nil {
		count = llm.EstimateTokens(*in.Prompt)
	} else {
		msgs := make([]llm.Message, len(in.Messages))
		for i, m := range in.Messages {
			text, _ := contentText(m.Content)
			msgs[i] = llm.Message{Role: m.Role, Content: text}
		}
		count = llm.EstimatePromptTokens(msgs)
	}
	tokens := make([]int, count)
	for i := range tokens {
		tokens[i] = i % 256
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Count       int   `json:"count"`
		MaxModelLen int   `json:"max_model_len"`
		Tokens      []int `json:"tokens"`
		TokenStrs   []any `json:"token_strs"`
	}{count, MaxModelLen, tokens, nil})
}

func (h *handler) models(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(vllmwire.ModelList(ModelName, h.start, MaxModelLen))
}

// request is the part of a chat-completions body the demo reads; other
// fields (temperature, …) are accepted and ignored.
type request struct {
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
	Stream              bool `json:"stream"`
	// ContinueFinalMessage (vLLM): continue the last, assistant message
	// instead of starting a new one.
	ContinueFinalMessage bool `json:"continue_final_message"`
	StreamOptions        *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (h *handler) chatCompletions(w http.ResponseWriter, r *http.Request) {
	in, msgs, maxTokens, apiErr := decode(w, r)
	if apiErr != nil {
		vllmwire.WriteError(w, apiErr.Code, vllmwire.ShapeNested, *apiErr)
		return
	}
	promptTokens := llm.EstimatePromptTokens(msgs)
	if promptTokens > MaxModelLen {
		vllmwire.WriteError(w, http.StatusBadRequest, vllmwire.ShapeNested, vllmwire.APIError{
			Message: fmt.Sprintf("This model's maximum context length is %d tokens. However, your request has %d input tokens. Please reduce the length of the input messages.", MaxModelLen, promptTokens),
			Type:    "BadRequestError", Param: "input_tokens", Code: http.StatusBadRequest,
		})
		return
	}

	chunks := words(reply(msgs, in.ContinueFinalMessage))
	finish := "stop"
	if maxTokens > 0 && len(chunks) > maxTokens {
		chunks, finish = chunks[:maxTokens], "length"
	}
	c := vllmwire.Completion{
		ID:      fmt.Sprintf("chatcmpl-demo%027x", h.seq.Add(1)),
		Created: time.Now().Unix(),
		Model:   ModelName,
	}
	log := h.logger.With("stream", in.Stream, "prompt_tokens", promptTokens, "max_tokens", maxTokens)

	if !in.Stream {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(c.Response(strings.Join(chunks, ""), finish, promptTokens, len(chunks)))
		log.DebugContext(r.Context(), "demo completion", "completion_tokens", len(chunks), "finish_reason", finish)
		return
	}
	// Like vLLM: a usage chunk only when stream_options asks for it
	// (include_usage defaults to true once stream_options is present).
	includeUsage := in.StreamOptions != nil && (in.StreamOptions.IncludeUsage == nil || *in.StreamOptions.IncludeUsage)
	sent, err := h.stream(w, r, c, chunks, finish, promptTokens, includeUsage)
	if err != nil {
		log.DebugContext(r.Context(), "demo stream stopped", "completion_tokens", sent, "err", err)
		return
	}
	log.DebugContext(r.Context(), "demo completion", "completion_tokens", sent, "finish_reason", finish)
}

// decode reads and validates the request as vLLM would, returning the
// messages and the effective max tokens (0 = no limit).
func decode(w http.ResponseWriter, r *http.Request) (request, []llm.Message, int, *vllmwire.APIError) {
	bad := func(msg, param string) *vllmwire.APIError {
		return &vllmwire.APIError{Message: msg, Type: "BadRequestError", Param: param, Code: http.StatusBadRequest}
	}
	var in request
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return in, nil, 0, &vllmwire.APIError{Message: "Request body too large.", Type: "BadRequestError", Code: http.StatusRequestEntityTooLarge}
		}
		return in, nil, 0, bad("Could not read the request body.", "")
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return in, nil, 0, bad("The request body is not valid JSON: "+err.Error(), "")
	}
	if len(in.Messages) == 0 {
		return in, nil, 0, bad("messages must not be empty.", "messages")
	}
	if in.StreamOptions != nil && !in.Stream {
		return in, nil, 0, bad("Stream options can only be defined when `stream=True`.", "stream_options")
	}
	msgs := make([]llm.Message, 0, len(in.Messages))
	for i, m := range in.Messages {
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool":
		default:
			return in, nil, 0, bad(fmt.Sprintf("messages[%d].role %q is not supported.", i, m.Role), fmt.Sprintf("messages.%d.role", i))
		}
		text, ok := contentText(m.Content)
		if !ok {
			return in, nil, 0, bad(fmt.Sprintf("messages[%d].content must be a string or a list of text parts.", i), fmt.Sprintf("messages.%d.content", i))
		}
		msgs = append(msgs, llm.Message{Role: m.Role, Content: text})
	}
	maxTokens := 0
	param := "max_tokens"
	if in.MaxTokens != nil {
		maxTokens = *in.MaxTokens
	}
	if in.MaxCompletionTokens != nil {
		maxTokens, param = *in.MaxCompletionTokens, "max_completion_tokens"
	}
	if (in.MaxTokens != nil || in.MaxCompletionTokens != nil) && maxTokens < 1 {
		return in, nil, 0, bad(fmt.Sprintf("%s must be at least 1, got %d.", param, maxTokens), param)
	}
	return in, msgs, maxTokens, nil
}

// contentText reads a message content: a string, null, or a list of parts
// whose text is joined.
func contentText(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", false
	}
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String(), true
}

// stream writes the reply like vLLM, one chunk per word, paced, and stops
// when the client goes away. It returns the content chunks sent.
func (h *handler) stream(w http.ResponseWriter, r *http.Request, c vllmwire.Completion, chunks []string, finish string, promptTokens int, includeUsage bool) (int, error) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", vllmwire.ContentType)
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) error {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		return nil
	}
	if err := send(c.RoleEvent()); err != nil {
		return 0, err
	}
	timer := time.NewTimer(h.delay)
	defer timer.Stop()
	for i, chunk := range chunks {
		select {
		case <-timer.C:
			timer.Reset(h.delay)
		case <-r.Context().Done():
			return i, fmt.Errorf("client gone: %w", r.Context().Err())
		}
		if err := send(c.ContentEvent(chunk)); err != nil {
			return i, err
		}
	}
	if err := send(c.FinishEvent(finish)); err != nil {
		return len(chunks), err
	}
	if includeUsage {
		if err := send(c.UsageEvent(promptTokens, len(chunks))); err != nil {
			return len(chunks), err
		}
	}
	return len(chunks), send([]byte(vllmwire.Done))
}

// words splits text into chunks of one word and the space after it; joined,
// they are text again.
func words(text string) []string {
	return strings.SplitAfter(text, " ")
}

// fillerSentences are the placeholder sentences replies are drawn from.
func fillerSentences() []string {
	return []string{
		"Replies from a real model stream in exactly like this one, a few words at a time.",
		"Markdown such as lists, **bold** text and code is rendered as in a real answer.",
		"This text is picked from a small fixed set of sentences, chosen by your message.",
		"You can stop a reply while it is being written and keep what arrived so far.",
		"If the connection drops, the reply carries on and is there when you come back.",
		"Long conversations are trimmed from the oldest messages to fit the model's context.",
		"The title of a conversation is written by the model after the first exchange.",
		"Nothing you type here leaves this server: there is no model behind it.",
		"Asking the same thing twice gives the same reply, which makes testing easy.",
		"A real open-weight model served by vLLM answers through this very same protocol.",
	}
}

// reply is what the demo model streams. Asked to continue the last
// (assistant) message, it streams the rest of the answer that message
// began — the answer to the conversation before it — or, when the text
// so far is not a beginning of that answer, the answer after a paragraph
// break.
func reply(msgs []llm.Message, continueFinal bool) string {
	n := len(msgs)
	if !continueFinal || n < 2 || msgs[n-1].Role != "assistant" {
		return Reply(msgs)
	}
	sofar, full := msgs[n-1].Content, Reply(msgs[:n-1])
	if rest, ok := strings.CutPrefix(full, sofar); ok {
		return rest
	}
	return "\n\n" + full
}

// Reply is the demo model's deterministic answer to a conversation.
func Reply(msgs []llm.Message) string {
	last := lastUserMessage(msgs)
	if strings.Contains(last, TitleRequestMarker) {
		return Title(msgs)
	}
	h := fnv.New64a()
	for _, m := range msgs {
		h.Write([]byte(m.Role))
		h.Write([]byte{0})
		h.Write([]byte(m.Content))
		h.Write([]byte{0})
	}
	pick := shuffle(fillerSentences(), h.Sum64())

	quote := strings.Join(strings.Fields(last), " ")
	if utf8.RuneCountInString(quote) > quoteChars {
		quote = strings.TrimSpace(string([]rune(quote)[:quoteChars])) + "…"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "This is Luna's demo model: no GPU, no real language model. You said: “%s”. ", quote)
	b.WriteString("Configure a real model with --models-file (see config/models.example.toml) to get real answers.\n\n")
	b.WriteString("Meanwhile, some placeholder text:\n\n")
	for _, s := range pick[:3] {
		b.WriteString("- " + s + "\n")
	}
	b.WriteString("\n" + pick[3] + " To try a real model, run `luna serve --models-file models.toml`.")
	return b.String()
}

// Title is the demo model's answer to a title request: at most six words,
// taken from the conversation's first user message (or, when the title
// request is the only message, from the text it quotes).
func Title(msgs []llm.Message) string {
	source := ""
	for _, m := range msgs {
		if m.Role == "user" && !strings.Contains(m.Content, TitleRequestMarker) {
			source = m.Content
			break
		}
	}
	if source == "" {
		source = quotedSubject(lastUserMessage(msgs))
	}
	fields := strings.FieldsFunc(source, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\'' && r != '-'
	})
	var kept []string
	for _, f := range fields {
		f = strings.Trim(f, "'-")
		if f == "" {
			continue
		}
		kept = append(kept, f)
		if len(kept) == maxTitleWords {
			break
		}
	}
	if len(kept) == 0 {
		return "Demo conversation"
	}
	first, size := utf8.DecodeRuneInString(kept[0])
	kept[0] = string(unicode.ToUpper(first)) + kept[0][size:]
	return strings.Join(kept, " ")
}

// quotedSubject finds what a title request is about: the text after a
// "User:" label (up to an "Assistant:" label), else quoted text, else what
// follows its last colon, else the request without the marker.
func quotedSubject(s string) string {
	if _, after, ok := strings.Cut(s, "User:"); ok {
		before, _, _ := strings.Cut(after, "Assistant:")
		if strings.TrimSpace(before) != "" {
			return before
		}
	}
	for _, q := range [][2]string{{"“", "”"}, {"\"", "\""}, {"«", "»"}} {
		if _, rest, ok := strings.Cut(s, q[0]); ok {
			if quoted, _, ok := strings.Cut(rest, q[1]); ok && quoted != "" {
				return quoted
			}
		}
	}
	if i := strings.LastIndex(s, ":"); i >= 0 && strings.TrimSpace(s[i+1:]) != "" {
		return s[i+1:]
	}
	return strings.ReplaceAll(s, TitleRequestMarker, "")
}

func lastUserMessage(msgs []llm.Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i].Content
		}
	}
	return ""
}

// shuffle permutes s deterministically from seed (Fisher–Yates driven by
// xorshift64, whose state never reaches zero), so that replies do not
// depend on the Go version's random number generators.
func shuffle(s []string, seed uint64) []string {
	x := seed | 1
	for i := len(s) - 1; i > 0; i-- {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		j := int(x % uint64(i+1))
		s[i], s[j] = s[j], s[i]
	}
	return s
}
