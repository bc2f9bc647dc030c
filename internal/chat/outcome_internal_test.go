package chat

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"luna"
	"luna/internal/llm"
	"luna/internal/models"
)

// TestOutcome: how a generation's end maps to the stored status, error and
// charge. Completed and stopped replies pay for the tokens used (the
// server's usage when it reported one, else the estimate and the chunks);
// a reply stopped before its first token, failures and interruptions pay
// nothing.
func TestOutcome(t *testing.T) {
	t.Parallel()
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	usage := &llm.Usage{PromptTokens: 100, CompletionTokens: 50}
	tests := []struct {
		name       string
		ctx        context.Context
		stopReason string
		chunks     int
		res        llm.Result
		err        error
		wantStatus string
		wantCode   string
		wantCharge int64
		wantTokens [2]int
	}{
		{name: "complete, usage reported", res: llm.Result{Usage: usage}, chunks: 40,
			wantStatus: StatusComplete, wantCharge: 150, wantTokens: [2]int{100, 50}},
		{name: "complete, no usage: estimate and chunks", chunks: 7,
			wantStatus: StatusComplete, wantCharge: 20 + 7, wantTokens: [2]int{20, 7}},
		{name: "stopped by the user after text", stopReason: stopByUser, chunks: 5, err: context.Canceled,
			wantStatus: StatusCancelled, wantCharge: 25, wantTokens: [2]int{20, 5}},
		{name: "stopped by the user before any text", stopReason: stopByUser, err: context.Canceled,
			wantStatus: StatusCancelled, wantCharge: 0, wantTokens: [2]int{20, 0}},
		{name: "server shutdown", stopReason: stopByShutdown, chunks: 5, err: context.Canceled,
			wantStatus: StatusInterrupted, wantCode: "interrupted"},
		{name: "longer than the longest reply", ctx: expired, chunks: 5, err: fmt.Errorf("read: %w", context.DeadlineExceeded),
			wantStatus: StatusInterrupted, wantCode: "interrupted"},
		{name: "no model slot", err: errModelBusy,
			wantStatus: StatusError, wantCode: luna.CodeUpstreamUnavailable},
		{name: "upstream error", chunks: 3, err: &llm.Error{Kind: llm.KindConnection, Message: "connection refused"},
			wantStatus: StatusError, wantCode: luna.CodeUpstreamUnavailable},
		{name: "prompt too long", err: &llm.Error{Kind: llm.KindContextLength, Message: "too long"},
			wantStatus: StatusError, wantCode: luna.CodeInvalidRequest},
		{name: "anything else", res: llm.Result{Usage: usage}, err: errors.New("boom"),
			wantStatus: StatusError, wantCode: luna.CodeUpstreamUnavailable},
	}
	var e engine
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			// One credit per token.
			g := &generation{ctx: ctx, stopReason: tt.stopReason, chunks: tt.chunks,
				model: models.Model{MillicreditsPer1K: 1_000_000}}
			o := e.outcomeOf(g, tt.res, tt.err, 20)
			if o.status != tt.wantStatus || o.errorCode != tt.wantCode || o.charge != tt.wantCharge ||
				o.promptTokens != tt.wantTokens[0] || o.completionTokens != tt.wantTokens[1] {
				t.Fatalf("outcome = %+v; want status %q, code %q, charge %d, tokens %v",
					o, tt.wantStatus, tt.wantCode, tt.wantCharge, tt.wantTokens)
			}
			if (o.errorCode == "") != (o.errorMessage == "") {
				t.Fatalf("error code %q with message %q", o.errorCode, o.errorMessage)
			}
		})
	}
}
