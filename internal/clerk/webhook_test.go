package clerk

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"luna/internal/clerk/clerktest"
)

// Vectors from the Clerk/Svix reference (section 4.1): fixed timestamps, so
// they go through parse with the timestamp check off.
const (
	vectorASecret = "whsec_gb09R7T6LRBvsF8mhr46D3MbDCQiah8n"
	vectorABody   = `{"data":{"id":"user_2xTestAda0001","object":"user","email_addresses":[{"id":"idn_2xTestEmail001","object":"email_address","email_address":"ada@example.com"}],"primary_email_address_id":"idn_2xTestEmail001","first_name":"Ada","last_name":"Lovelace","username":null,"image_url":"https://img.clerk.com/example","public_metadata":{},"created_at":1767225600000,"updated_at":1767225600000},"object":"event","type":"user.created","timestamp":1767225600123,"instance_id":"ins_2xTestInstance1"}`

	vectorBSecret      = "whsec_9o+ymQ6l/QrHo9R2a8xfBCBzKmG/3OAf"
	vectorBOtherSecret = "whsec_deBDcoW6rqk5VXJYrX6hM8thR21jXAxH"
	vectorBBody        = `{"data":{"deleted":true,"id":"user_2xTestAda0001","object":"user"},"object":"event","type":"user.deleted","timestamp":1767229200456,"instance_id":"ins_2xTestInstance1"}`
	vectorBSignature   = "v1,8tUXNrtAEA7OjmlisAqno00m0V0C9U72wCshYBFzGns= v1,m0LwKacc3Fbv1/WfJmWgnX6AQbEtM/HcvsUrbqKDiHI="
)

func svixHeader(id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set("svix-id", id)
	h.Set("svix-timestamp", ts)
	h.Set("svix-signature", sig)
	return h
}

func newWebhookVerifier(t *testing.T, secret string) *WebhookVerifier {
	t.Helper()
	w, err := NewWebhookVerifier(secret)
	if err != nil {
		t.Fatalf("NewWebhookVerifier: %v", err)
	}
	return w
}

func TestWebhookSignatureVectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		secret string
		msgID  string
		ts     int64
		body   string
		want   string
	}{
		{"svix go test vector", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, `{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		{"svix docs vector", "whsec_plJ3nmyCDGBKInavdOK15jsl", "msg_loFOjxBNrRLzqYUf", 1731705121, `{"event_type":"ping","data":{"success":true}}`, "v1,rAvfW3dJ/X/qxhsaXPOyyCGmRKsaKWcsNccKXlIktD0="},
		{"vector A", vectorASecret, "msg_2xTestMsg000000000000001", 1767225601, vectorABody, "v1,0bztS72p+anV5cDwtX1KWgm21YEr6e+2R6h3qB2Ke4c="},
		{"vector A plus newline", vectorASecret, "msg_2xTestMsg000000000000001", 1767225601, vectorABody + "\n", "v1,Fu4XXEFZExC/H+HjBiYE3EBI9Lzq0y2chjAHsW3+H6Y="},
		{"vector B current secret", vectorBSecret, "msg_2xTestMsg000000000000002", 1767229201, vectorBBody, "v1,m0LwKacc3Fbv1/WfJmWgnX6AQbEtM/HcvsUrbqKDiHI="},
		{"vector B other secret", vectorBOtherSecret, "msg_2xTestMsg000000000000002", 1767229201, vectorBBody, "v1,8tUXNrtAEA7OjmlisAqno00m0V0C9U72wCshYBFzGns="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wh, err := svix.NewWebhook(tt.secret)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wh.Sign(tt.msgID, time.Unix(tt.ts, 0), []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Sign = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWebhookParseVectors(t *testing.T) {
	t.Parallel()
	headerA := svixHeader("msg_2xTestMsg000000000000001", "1767225601", "v1,0bztS72p+anV5cDwtX1KWgm21YEr6e+2R6h3qB2Ke4c=")
	headerB := svixHeader("msg_2xTestMsg000000000000002", "1767229201", vectorBSignature)

	t.Run("vector A", func(t *testing.T) {
		t.Parallel()
		w := newWebhookVerifier(t, vectorASecret)
		ev, err := w.parse([]byte(vectorABody), headerA, false)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		want := Event{
			MessageID: "msg_2xTestMsg000000000000001",
			Type:      "user.created",
			Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 123e6, time.UTC),
			User: User{
				ID:        "user_2xTestAda0001",
				Email:     "ada@example.com",
				FirstName: "Ada",
				LastName:  "Lovelace",
				ImageURL:  "https://img.clerk.com/example",
				CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
				UpdatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			},
		}
		if ev != want {
			t.Errorf("event = %+v\nwant    %+v", ev, want)
		}
		// Parse enforces the five-minute tolerance: the fixed timestamp fails.
		if _, err := w.Parse([]byte(vectorABody), headerA); !errors.Is(err, ErrInvalidSignature) {
			t.Errorf("Parse with the vector's old timestamp: err = %v, want ErrInvalidSignature", err)
		}
	})
	t.Run("vector A body plus newline", func(t *testing.T) {
		t.Parallel()
		w := newWebhookVerifier(t, vectorASecret)
		if _, err := w.parse([]byte(vectorABody+"\n"), headerA, false); !errors.Is(err, ErrInvalidSignature) {
			t.Fatalf("err = %v, want ErrInvalidSignature", err)
		}
	})
	for _, secret := range []string{vectorBSecret, vectorBOtherSecret} {
		t.Run("vector B rotation header/"+secret, func(t *testing.T) {
			t.Parallel()
			w := newWebhookVerifier(t, secret)
			ev, err := w.parse([]byte(vectorBBody), headerB, false)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			want := Event{
				MessageID: "msg_2xTestMsg000000000000002",
				Type:      "user.deleted",
				Timestamp: time.Date(2026, 1, 1, 1, 0, 0, 456e6, time.UTC),
				User:      User{ID: "user_2xTestAda0001", Deleted: true},
			}
			if ev != want {
				t.Errorf("event = %+v\nwant    %+v", ev, want)
			}
		})
	}
	t.Run("vector B under an unrelated secret", func(t *testing.T) {
		t.Parallel()
		w := newWebhookVerifier(t, vectorASecret)
		if _, err := w.parse([]byte(vectorBBody), headerB, false); !errors.Is(err, ErrInvalidSignature) {
			t.Fatalf("err = %v, want ErrInvalidSignature", err)
		}
	})
}

func TestWebhookParse(t *testing.T) {
	t.Parallel()
	f := clerktest.New(t)
	w := newWebhookVerifier(t, vectorASecret)
	now := time.Now()
	sign := func(body string, ts time.Time) http.Header {
		return f.SignedWebhook(t, vectorASecret, "msg_fresh", ts, []byte(body))
	}

	const updated = `{"data":{"id":"user_2","object":"user","email_addresses":[{"id":"idn_old","email_address":"old@example.com"},{"id":"idn_new","email_address":"new@example.com"}],"primary_email_address_id":"idn_new","first_name":null,"last_name":null,"username":"ada","image_url":null,"created_at":1767225600000,"updated_at":1767225700999},"object":"event","type":"user.updated","timestamp":1767225701000}`
	const noPrimary = `{"data":{"id":"user_3","email_addresses":[{"id":"idn_a","email_address":"a@example.com"}],"primary_email_address_id":null},"type":"user.created","timestamp":1767225600000}`
	const noEmails = `{"data":{"id":"user_4","email_addresses":[],"first_name":"Grace","last_name":""},"type":"user.created","timestamp":1767225600000}`

	tests := []struct {
		name    string
		body    string
		header  http.Header
		wantErr error
		want    Event
	}{
		{
			name:   "user.created",
			body:   vectorABody,
			header: sign(vectorABody, now),
			want: Event{
				MessageID: "msg_fresh",
				Type:      "user.created",
				Timestamp: time.UnixMilli(1767225600123).UTC(),
				User: User{
					ID: "user_2xTestAda0001", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace",
					ImageURL:  "https://img.clerk.com/example",
					CreatedAt: time.UnixMilli(1767225600000).UTC(), UpdatedAt: time.UnixMilli(1767225600000).UTC(),
				},
			},
		},
		{
			name:   "user.updated with nulls and a non-first primary email",
			body:   updated,
			header: sign(updated, now),
			want: Event{
				MessageID: "msg_fresh",
				Type:      "user.updated",
				Timestamp: time.UnixMilli(1767225701000).UTC(),
				User: User{
					ID: "user_2", Email: "new@example.com", Username: "ada",
					CreatedAt: time.UnixMilli(1767225600000).UTC(), UpdatedAt: time.UnixMilli(1767225700999).UTC(),
				},
			},
		},
		{
			name:   "null primary email id takes the first address",
			body:   noPrimary,
			header: sign(noPrimary, now),
			want: Event{MessageID: "msg_fresh", Type: "user.created", Timestamp: time.UnixMilli(1767225600000).UTC(),
				User: User{ID: "user_3", Email: "a@example.com"}},
		},
		{
			name:   "no email addresses",
			body:   noEmails,
			header: sign(noEmails, now),
			want: Event{MessageID: "msg_fresh", Type: "user.created", Timestamp: time.UnixMilli(1767225600000).UTC(),
				User: User{ID: "user_4", FirstName: "Grace"}},
		},
		{
			name:   "user.deleted stub",
			body:   vectorBBody,
			header: sign(vectorBBody, now),
			want: Event{MessageID: "msg_fresh", Type: "user.deleted", Timestamp: time.UnixMilli(1767229200456).UTC(),
				User: User{ID: "user_2xTestAda0001", Deleted: true}},
		},
		{
			name:   "other event type",
			body:   `{"data":{"id":"sess_1"},"type":"session.created","timestamp":1767225600000}`,
			header: sign(`{"data":{"id":"sess_1"},"type":"session.created","timestamp":1767225600000}`, now),
			want:   Event{MessageID: "msg_fresh", Type: "session.created", Timestamp: time.UnixMilli(1767225600000).UTC()},
		},
		{
			name: "webhook-* header names",
			body: vectorBBody,
			header: func() http.Header {
				h := sign(vectorBBody, now)
				out := http.Header{}
				out.Set("webhook-id", h.Get("svix-id"))
				out.Set("webhook-timestamp", h.Get("svix-timestamp"))
				out.Set("webhook-signature", h.Get("svix-signature"))
				return out
			}(),
			want: Event{MessageID: "msg_fresh", Type: "user.deleted", Timestamp: time.UnixMilli(1767229200456).UTC(),
				User: User{ID: "user_2xTestAda0001", Deleted: true}},
		},
		{
			name: "rotation header with two signatures",
			body: vectorABody,
			header: func() http.Header {
				other := f.SignedWebhook(t, vectorBOtherSecret, "msg_fresh", now, []byte(vectorABody))
				h := sign(vectorABody, now)
				h.Set("svix-signature", other.Get("svix-signature")+" "+h.Get("svix-signature"))
				return h
			}(),
			want: Event{
				MessageID: "msg_fresh", Type: "user.created", Timestamp: time.UnixMilli(1767225600123).UTC(),
				User: User{
					ID: "user_2xTestAda0001", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace",
					ImageURL:  "https://img.clerk.com/example",
					CreatedAt: time.UnixMilli(1767225600000).UTC(), UpdatedAt: time.UnixMilli(1767225600000).UTC(),
				},
			},
		},
		{name: "no headers", body: vectorABody, header: http.Header{}, wantErr: ErrInvalidSignature},
		{
			name: "no signature header",
			body: vectorABody,
			header: func() http.Header {
				h := sign(vectorABody, now)
				h.Del("svix-signature")
				return h
			}(),
			wantErr: ErrInvalidSignature,
		},
		{
			name:    "signed with another secret",
			body:    vectorABody,
			header:  f.SignedWebhook(t, vectorBOtherSecret, "msg_fresh", now, []byte(vectorABody)),
			wantErr: ErrInvalidSignature,
		},
		{
			name: "signature for another message id",
			body: vectorABody,
			header: func() http.Header {
				h := sign(vectorABody, now)
				h.Set("svix-id", "msg_other")
				return h
			}(),
			wantErr: ErrInvalidSignature,
		},
		{name: "timestamp six minutes old", body: vectorABody, header: sign(vectorABody, now.Add(-6*time.Minute)), wantErr: ErrInvalidSignature},
		{name: "timestamp six minutes ahead", body: vectorABody, header: sign(vectorABody, now.Add(6*time.Minute)), wantErr: ErrInvalidSignature},
		{
			name: "timestamp not a number",
			body: vectorABody,
			header: func() http.Header {
				h := sign(vectorABody, now)
				h.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10)+"x")
				return h
			}(),
			wantErr: ErrInvalidSignature,
		},
		{name: "body plus a trailing newline", body: vectorABody + "\n", header: sign(vectorABody, now), wantErr: ErrInvalidSignature},
		{name: "body with one byte changed", body: strings.Replace(vectorABody, "Ada", "Adb", 1), header: sign(vectorABody, now), wantErr: ErrInvalidSignature},
		{name: "malformed JSON", body: `{"data":`, header: sign(`{"data":`, now), wantErr: ErrInvalidPayload},
		{name: "not an object", body: `[1,2]`, header: sign(`[1,2]`, now), wantErr: ErrInvalidPayload},
		{name: "no type", body: `{"data":{"id":"user_1"}}`, header: sign(`{"data":{"id":"user_1"}}`, now), wantErr: ErrInvalidPayload},
		{
			name:    "user event without id",
			body:    `{"data":{"object":"user"},"type":"user.updated","timestamp":1}`,
			header:  sign(`{"data":{"object":"user"},"type":"user.updated","timestamp":1}`, now),
			wantErr: ErrInvalidPayload,
		},
		{
			name:    "user event with null data",
			body:    `{"data":null,"type":"user.created","timestamp":1}`,
			header:  sign(`{"data":null,"type":"user.created","timestamp":1}`, now),
			wantErr: ErrInvalidPayload,
		},
		{
			name:    "user event with wrongly typed field",
			body:    `{"data":{"id":"user_1","first_name":42},"type":"user.created","timestamp":1}`,
			header:  sign(`{"data":{"id":"user_1","first_name":42},"type":"user.created","timestamp":1}`, now),
			wantErr: ErrInvalidPayload,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := w.Parse([]byte(tt.body), tt.header)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if ev != tt.want {
				t.Errorf("event = %+v\nwant    %+v", ev, tt.want)
			}
		})
	}
}

func TestNewWebhookVerifierErrors(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{"", "whsec_", "whsec_not base64!"} {
		if _, err := NewWebhookVerifier(secret); err == nil {
			t.Errorf("NewWebhookVerifier(%q) succeeded, want an error", secret)
		}
	}
}

func TestUserDisplayName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		user User
		want string
	}{
		{User{FirstName: "Ada", LastName: "Lovelace", Username: "ada"}, "Ada Lovelace"},
		{User{FirstName: "Ada", Username: "ada"}, "Ada"},
		{User{LastName: "Lovelace"}, "Lovelace"},
		{User{FirstName: " ", LastName: " ", Username: "ada"}, "ada"},
		{User{Username: "ada"}, "ada"},
		{User{}, ""},
	}
	for _, tt := range tests {
		if got := tt.user.DisplayName(); got != tt.want {
			t.Errorf("%+v.DisplayName() = %q, want %q", tt.user, got, tt.want)
		}
	}
}

// FuzzWebhookParse signs every input, so the decoder sees arbitrary bytes
// behind a valid signature: it must not panic and may only fail with
// ErrInvalidPayload.
func FuzzWebhookParse(f *testing.F) {
	f.Add([]byte(vectorABody))
	f.Add([]byte(vectorBBody))
	f.Add([]byte(`{"data":null,"type":"user.created"}`))
	f.Add([]byte(`{"type":"user.updated","data":{"id":"u","email_addresses":[null]}}`))
	w, err := NewWebhookVerifier(vectorASecret)
	if err != nil {
		f.Fatal(err)
	}
	signer, err := svix.NewWebhook(vectorASecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		now := time.Now()
		sig, err := signer.Sign("msg_fuzz", now, body)
		if err != nil {
			t.Fatal(err)
		}
		header := svixHeader("msg_fuzz", strconv.FormatInt(now.Unix(), 10), sig)
		ev, err := w.Parse(body, header)
		if err != nil && !errors.Is(err, ErrInvalidPayload) {
			t.Fatalf("err = %v, want nil or ErrInvalidPayload", err)
		}
		if err == nil && strings.HasPrefix(ev.Type, "user.") && ev.User.ID == "" {
			t.Fatalf("user event without id accepted: %+v", ev)
		}
	})
}
