package images

import (
	"testing"
	"time"
)

// TestView: only a failed job shows an error, and optional ids are null
// when unset.
func TestView(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, status := range []string{StatusPending, StatusProcessing, StatusCompleted, StatusFailed} {
		j := Job{ID: "j", Status: status, Prompt: "p", Resolution: 512, Cost: 50, CreatedAt: at,
			ErrorCode: "upstream_error", ErrorMessage: "The image server failed."}
		v := view(j)
		if got, want := v.Error != nil, status == StatusFailed; got != want {
			t.Errorf("%s: error shown = %v, want %v", status, got, want)
		}
		if v.Error != nil && (v.Error.Code != j.ErrorCode || v.Error.Message != j.ErrorMessage) {
			t.Errorf("%s: error = %+v", status, *v.Error)
		}
		if v.ConversationID != nil || v.ClientRequestID != nil || v.Image != nil {
			t.Errorf("%s: unset ids or image shown: %+v", status, v)
		}
	}
	v := view(Job{ID: "j", Status: StatusPending, ConversationID: "c", ClientRequestID: "r"})
	if v.ConversationID == nil || *v.ConversationID != "c" || v.ClientRequestID == nil || *v.ClientRequestID != "r" {
		t.Errorf("ids not shown: %+v", v)
	}
}

// TestConfigDefaults: a zero Config takes the documented defaults; the
// credit hold outlives the job's timeout.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	if c.Cost != 50 || c.Timeout != 5*time.Minute || c.MaxQueuedPerUser != 4 || c.URLTTL != time.Hour ||
		c.LeaseTTL != 30*time.Second || c.HoldTTL != c.Timeout+30*time.Minute {
		t.Fatalf("defaults = %+v", c)
	}
	c = Config{Timeout: time.Minute}
	c.setDefaults()
	if c.HoldTTL != 31*time.Minute {
		t.Fatalf("hold TTL %s for a 1m timeout, want 31m", c.HoldTTL)
	}
}
