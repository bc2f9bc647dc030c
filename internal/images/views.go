package images

import "time"

// ImageJSON is the stored picture of a completed job.
type ImageJSON struct {
	URL         string    `json:"url"`
	ExpiresAt   time.Time `json:"expiresAt"`
	ContentType string    `json:"contentType"`
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	SizeBytes   int64     `json:"sizeBytes"`
	SHA256      string    `json:"sha256"`
}

// JobJSON is a job as the API and events show it.
type JobJSON struct {
	ID              string     `json:"id"`
	Status          string     `json:"status"`
	Prompt          string     `json:"prompt"`
	Resolution      int        `json:"resolution"`
	Cost            int64      `json:"cost"`
	ConversationID  *string    `json:"conversationId"`
	ClientRequestID *string    `json:"clientRequestId"`
	Error           *ErrorJSON `json:"error"`
	Image           *ImageJSON `json:"image"`
	CreatedAt       time.Time  `json:"createdAt"`
	StartedAt       *time.Time `json:"startedAt"`
	CompletedAt     *time.Time `json:"completedAt"`
}

// ErrorJSON is why a job failed.
type ErrorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// view is the JSON view of j without its image URL.
func view(j Job) JobJSON {
	v := JobJSON{ID: j.ID, Status: j.Status, Prompt: j.Prompt, Resolution: j.Resolution, Cost: j.Cost,
		CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, CompletedAt: j.CompletedAt}
	if j.ConversationID != "" {
		v.ConversationID = &j.ConversationID
	}
	if j.ClientRequestID != "" {
		v.ClientRequestID = &j.ClientRequestID
	}
	if j.Status == StatusFailed {
		v.Error = &ErrorJSON{Code: j.ErrorCode, Message: j.ErrorMessage}
	}
	return v
}
