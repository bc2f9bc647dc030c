package llm

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"
)

const (
	// idleConnTimeout closes pooled connections before vLLM (uvicorn,
	// VLLM_HTTP_TIMEOUT_KEEP_ALIVE = 5 s) closes them under us.
	idleConnTimeout = 4 * time.Second
	// maxIdleConnsPerHost keeps enough warm connections for bursts of
	// concurrent streams to one model server.
	maxIdleConnsPerHost = 32
)

// connectTimeoutKey carries Request.ConnectTimeout to the dialers of the
// shared transport (the transport keeps request context values for dials).
type connectTimeoutKey struct{}

func withConnectTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, connectTimeoutKey{}, d)
}

func connectTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && d > 0 {
		return d
	}
	return DefaultConnectTimeout
}

// newTransport returns the transport shared by all streams of a Client:
//   - no overall timeout (streams last minutes; Stream runs its own
//     first-token and idle timers) and no response-header timeout;
//   - TCP connect and TLS handshake bounded together by the request's
//     ConnectTimeout (our own TLS dialer, since the transport's
//     TLSHandshakeTimeout cannot vary per request);
//   - HTTP/1.1 only: vLLM (uvicorn) speaks nothing else, and one stream per
//     connection means cancelling a stream closes its connection, which is
//     how vLLM notices the client is gone and aborts generation;
//   - no transparent gzip, so no proxy is invited to buffer the stream.
//
// tlsConfig is nil in production (system roots); tests pass their own roots.
func newTransport(tlsConfig *tls.Config) *http.Transport {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := connectTimeout(ctx)
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		conn, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("dial %s: %w after %s: %w", addr, errConnectTimeout, d, err)
			}
			return nil, err
		}
		return conn, nil
	}
	dialTLS := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := connectTimeout(ctx)
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		var cfg *tls.Config
		if tlsConfig != nil {
			cfg = tlsConfig.Clone()
		} else {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		cfg.NextProtos = []string{"http/1.1"}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w with %s: %w after %s", errTLSHandshake, addr, errConnectTimeout, d)
			}
			return nil, fmt.Errorf("%w with %s: %w", errTLSHandshake, addr, err)
		}
		return conn, nil
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	return &http.Transport{
		Proxy:          http.ProxyFromEnvironment,
		DialContext:    dial,
		DialTLSContext: dialTLS,
		// Used only for HTTPS through a proxy (CONNECT), where the transport
		// does the handshake itself.
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   DefaultConnectTimeout,
		Protocols:             protocols,
		DisableCompression:    true,
		MaxIdleConns:          4 * maxIdleConnsPerHost,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		ExpectContinueTimeout: time.Second,
	}
}
