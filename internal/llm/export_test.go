package llm

import (
	"crypto/tls"
	"log/slog"
	"net/http"
)

// NewClientWithTLS is NewClient trusting the roots in cfg (test servers).
func NewClientWithTLS(logger *slog.Logger, cfg *tls.Config) *Client {
	transport := newTransport(cfg)
	return newClient(logger, transport, transport.CloseIdleConnections)
}

// NewClientWithRoundTripper is a Client whose requests rt answers, for
// fuzzing the response path without sockets.
func NewClientWithRoundTripper(rt http.RoundTripper) *Client {
	return newClient(nil, rt, func() {})
}
