package inprocess_test

import (
	"io"
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"luna/internal/inprocess"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServerAndRouter(t *testing.T) {
	srv := inprocess.Start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "in-process "+r.Host+r.URL.Path) // test handler
	}), nil)
	client := &http.Client{Transport: inprocess.Router{
		Next:  roundTripFunc(func(r *http.Request) (*http.Response, error) { return nil, errNetwork }),
		Hosts: map[string]http.RoundTripper{"demo.luna.invalid": srv.Transport()},
	}}
	for range 3 { // also over a kept-alive connection
		resp, err := client.Get("http://demo.luna.invalid/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := string(body), "in-process demo.luna.invalid/v1/models"; got != want {
			t.Fatalf("body = %q, want %q", got, want)
		}
	}
	if _, err := client.Get("http://example.invalid/"); err == nil {
		t.Fatal("a host the router does not know went in-process")
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get("http://demo.luna.invalid/v1/models"); err == nil {
		t.Fatal("request after Close succeeded")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var errNetwork = io.ErrUnexpectedEOF
