package api

import (
	"net/http"

	"luna/internal/images"
)

func (s *Server) handleCreateImage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Prompt          string `json:"prompt"`
		Resolution      int    `json:"resolution"`
		ConversationID  string `json:"conversationId"`
		ClientRequestID string `json:"clientRequestId"`
	}
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	job, err := s.images.Create(r.Context(), images.CreateRequest{
		UserID: userFrom(r.Context()).ID, Prompt: req.Prompt, Resolution: req.Resolution,
		ConversationID: req.ConversationID, ClientRequestID: req.ClientRequestID, RateLimit: s.userRate(r),
	})
	if err != nil {
		if err == images.ErrQueueFull {
			w.Header().Set("Retry-After", "10")
		}
		s.writeError(w, r, err)
		return
	}
	s.writeJob(w, r, http.StatusAccepted, job)
}

func (s *Server) writeJob(w http.ResponseWriter, r *http.Request, status int, job images.Job) {
	v, err := s.images.View(r.Context(), job)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

func (s *Server) handleListImages(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	jobs, next, err := s.images.List(r.Context(), userFrom(r.Context()).ID, p.Limit, p.Cursor)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]images.JobJSON, 0, len(jobs))
	for _, j := range jobs {
		v, err := s.images.View(r.Context(), j)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		items = append(items, v)
	}
	writeJSON(w, http.StatusOK, listJSON[images.JobJSON]{Items: items, NextCursor: optionalCursor(next)})
}

func (s *Server) handleGetImage(w http.ResponseWriter, r *http.Request) {
	job, err := s.images.Get(r.Context(), userFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJob(w, r, http.StatusOK, job)
}
