// Package inprocess serves HTTP handlers to clients in the same process
// without any network address. Luna's built-in demo endpoints run this way:
// Luna's own clients (the model client, the ComfyUI client) reach them with
// real HTTP over in-memory connections, and nothing outside the process can.
package inprocess

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is an http.Server listening on in-memory connections.
type Server struct {
	ln        *listener
	srv       *http.Server
	transport *http.Transport
	done      chan struct{}
}

// Start serves h until Close. logger receives the server's own errors (nil
// discards them).
func Start(h http.Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln := &listener{conns: make(chan net.Conn), closed: make(chan struct{})}
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		done: make(chan struct{}),
	}
	s.transport = &http.Transport{
		// Every request goes to this server, whatever its URL's host.
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return ln.dial(ctx) },
		Proxy:               nil, // never through a proxy from the environment
		DisableCompression:  true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln) // returns ErrServerClosed after Close
	}()
	return s
}

// Transport is a RoundTripper that sends every request to this server.
func (s *Server) Transport() http.RoundTripper { return s.transport }

// Close stops the server and closes its connections.
func (s *Server) Close() error {
	s.transport.CloseIdleConnections()
	err := s.srv.Close()
	<-s.done
	return err
}

// listener hands the server side of in-memory pipes to http.Server.
type listener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *listener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		client.Close()
		server.Close()
		return nil, net.ErrClosed
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, ctx.Err()
	}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *listener) Addr() net.Addr { return addr{} }

// addr is the listener's address: there is none on any network.
type addr struct{}

func (addr) Network() string { return "inprocess" }
func (addr) String() string  { return "inprocess" }

// Router sends requests for the hosts it knows to their in-process
// servers and every other request to Next.
type Router struct {
	Next  http.RoundTripper
	Hosts map[string]http.RoundTripper // "host" or "host:port" of the URL → its server's Transport
}

// RoundTrip implements http.RoundTripper.
func (r Router) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt, ok := r.Hosts[req.URL.Host]; ok {
		return rt.RoundTrip(req)
	}
	return r.Next.RoundTrip(req)
}
