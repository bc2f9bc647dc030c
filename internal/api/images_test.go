package api_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"luna/internal/app"
	"luna/internal/imagegen/imagegentest"
	"luna/internal/images"
	"luna/internal/store"
)

// fastImages makes image jobs quick to test: short polls, a 3 s budget.
func fastImages(c *app.Config) {
	c.Images.PollInterval = 20 * time.Millisecond
	c.Images.Jobs = images.Config{Timeout: 3 * time.Second, LeaseTTL: time.Second, SweepInterval: 100 * time.Millisecond,
		SlotWait: 50 * time.Millisecond}
}

func newComfyServer(t *testing.T, dialect store.Dialect, fake *imagegentest.ComfyUIFake, configure func(*app.Config)) *testServer {
	t.Helper()
	s := newTestServer(t, dialect, func(c *app.Config) {
		c.Images.Backend, c.Images.ComfyUIURL = "comfyui", fake.URL
		fastImages(c)
		if configure != nil {
			configure(c)
		}
	})
	return s
}

// waitImage polls a job until it is completed or failed.
func (s *testServer) waitImage(token, id string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		r := s.do("GET", "/v1/images/"+id, token, nil)
		if r.status != http.StatusOK {
			s.t.Fatalf("get image: %d %s", r.status, r.body)
		}
		job := r.json(s.t)
		if st := job["status"]; st == "completed" || st == "failed" {
			return job
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("image %s not finished after 20s", id)
	return nil
}

func (s *testServer) createImage(token string, body map[string]any) response {
	s.t.Helper()
	return s.do("POST", "/v1/images", token, body)
}

// fetch GETs a URL (absolute or a path on the server) without a token.
func (s *testServer) fetch(url string) (int, []byte) {
	s.t.Helper()
	if strings.HasPrefix(url, "/") {
		url = s.url + url
	}
	resp, err := http.Get(url)
	if err != nil {
		s.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func TestImageOnComfyUI(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := imagegentest.NewComfyUI(t)
		s := newComfyServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		events := s.openStream("/v1/events", token, "")
		prompt := "a \"cat\" \\ {x} \n 日本 🙂"
		r := s.createImage(token, map[string]any{"prompt": prompt, "resolution": 768})
		if r.status != http.StatusAccepted {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		job := r.json(t)
		if job["status"] != "pending" || job["cost"] != 50.0 {
			t.Fatalf("new job = %v", job)
		}
		if c := s.credits(token); c["reserved"] != 50.0 || c["available"] != 950.0 {
			t.Fatalf("credits while pending = %v", c)
		}
		done := s.waitImage(token, job["id"].(string))
		if done["status"] != "completed" {
			t.Fatalf("job = %v", done)
		}
		img := done["image"].(map[string]any)
		status, data := s.fetch(img["url"].(string))
		if status != 200 || !bytes.Equal(data, fake.Image()) {
			t.Fatalf("signed URL: %d, %d bytes (want the fake's %d)", status, len(data), len(fake.Image()))
		}
		sum := sha256.Sum256(data)
		if img["sha256"] != hex.EncodeToString(sum[:]) || img["contentType"] != "image/png" || img["sizeBytes"] != float64(len(data)) {
			t.Fatalf("image = %v", img)
		}
		if c := s.credits(token); c["balance"] != 950.0 || c["reserved"] != 0.0 {
			t.Fatalf("credits after = %v", c)
		}
		// The prompt reached ComfyUI as data, byte for byte, in node 6.
		subs := fake.Submissions()
		if len(subs) != 1 {
			t.Fatalf("%d submissions, want 1", len(subs))
		}
		node := subs[0].Prompt["6"].(map[string]any)["inputs"].(map[string]any)
		if node["text"] != prompt {
			t.Fatalf("node 6 text = %q, want %q", node["text"], prompt)
		}
		// Live status on /v1/events.
		seen := map[string]bool{}
		deadline := time.After(5 * time.Second)
		for !seen["completed"] {
			evc := make(chan sseEvent, 1)
			go func() {
				if ev, ok := events.next(); ok {
					evc <- ev
				}
			}()
			select {
			case ev := <-evc:
				if ev.name == "image.updated" {
					seen[decode(t, ev.data)["status"].(string)] = true
				}
			case <-deadline:
				t.Fatalf("image events seen: %v", seen)
			}
		}
		// Gallery.
		list := s.do("GET", "/v1/images", token, nil).json(t)
		if items := list["items"].([]any); len(items) != 1 || items[0].(map[string]any)["image"] == nil {
			t.Fatalf("gallery = %v", list)
		}
		wantAuditClean(t, s)
	})
}

func TestImageFailuresReleaseCredits(t *testing.T) {
	cases := map[string]func(f *imagegentest.ComfyUIFake){
		"node_errors on submit": func(f *imagegentest.ComfyUIFake) { f.RejectSubmissions(true) },
		"execution error":       func(f *imagegentest.ComfyUIFake) { f.FailExecution("CUDA out of memory") },
		"never finishes":        func(f *imagegentest.ComfyUIFake) { f.SetNeverFinish(true) },
	}
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		for name, setup := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				fake := imagegentest.NewComfyUI(t)
				setup(fake)
				s := newComfyServer(t, dialect, fake, nil)
				token := s.signup("a@example.com")
				job := s.createImage(token, map[string]any{"prompt": "a cat", "resolution": 512}).json(t)
				done := s.waitImage(token, job["id"].(string))
				errInfo, _ := done["error"].(map[string]any)
				if done["status"] != "failed" || errInfo == nil || errInfo["message"] == "" || done["image"] != nil {
					t.Fatalf("job = %v", done)
				}
				// A rejected submission fails at once with ComfyUI's reason,
				// not by running into the job timeout.
				if name == "node_errors on submit" && errInfo["code"] == "timeout" {
					t.Fatalf("validation failure ended as a timeout: %v", errInfo)
				}
				if c := s.credits(token); c["balance"] != 1000.0 || c["reserved"] != 0.0 {
					t.Fatalf("credits = %v, want released", c)
				}
				wantAuditClean(t, s)
			})
		}
	})
}

func TestImageSurvivesComfyUIOutage(t *testing.T) {
	fake := imagegentest.NewComfyUI(t)
	fake.FailNext(5, imagegentest.FaultUnavailable)
	s := newComfyServer(t, store.SQLite, fake, nil)
	token := s.signup("a@example.com")
	job := s.createImage(token, map[string]any{"prompt": "a cat", "resolution": 512}).json(t)
	if done := s.waitImage(token, job["id"].(string)); done["status"] != "completed" {
		t.Fatalf("job after outage = %v", done)
	}
}

// A submission whose answer was lost (a proxy's 504) that reaches ComfyUI
// late: the resubmission gets 409 "prompt_id already exists", and the job
// follows the prompt to its image and is charged once.
func TestImageFollowsComfyUIDuplicatePromptID(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := imagegentest.NewComfyUI(t)
		fake.FailNext(1, imagegentest.FaultLateDelivery)
		s := newComfyServer(t, dialect, fake, nil)
		token := s.signup("a@example.com")
		job := s.createImage(token, map[string]any{"prompt": "a cat", "resolution": 512}).json(t)
		if done := s.waitImage(token, job["id"].(string)); done["status"] != "completed" {
			t.Fatalf("job = %v", done)
		}
		if got := len(fake.Submitted()); got != 1 {
			t.Fatalf("ComfyUI accepted %d submissions, want 1", got)
		}
		if c := s.credits(token); c["balance"] != 950.0 || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v, want one charge of 50", c)
		}
		wantAuditClean(t, s)
	})
}

// A job that times out while its prompt runs interrupts the prompt, so the
// next job (ComfyUI runs one prompt at a time) gets the GPU.
func TestImageTimeoutInterruptsComfyUIPrompt(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := imagegentest.NewComfyUI(t)
		fake.SetNeverFinish(true)
		s := newComfyServer(t, dialect, fake, func(c *app.Config) { c.Images.Jobs.Timeout = 700 * time.Millisecond })
		token := s.signup("a@example.com")
		first := s.createImage(token, map[string]any{"prompt": "a cat", "resolution": 512}).json(t)
		if done := s.waitImage(token, first["id"].(string)); done["status"] != "failed" {
			t.Fatalf("first job = %v, want failed (timed out)", done)
		}
		if got := fake.Interrupts(); len(got) != 1 {
			t.Fatalf("interrupts = %q, want the timed-out prompt", got)
		}
		fake.SetNeverFinish(false)
		next := s.createImage(token, map[string]any{"prompt": "a dog", "resolution": 512}).json(t)
		if done := s.waitImage(token, next["id"].(string)); done["status"] != "completed" {
			t.Fatalf("next job = %v", done)
		}
		if c := s.credits(token); c["balance"] != 950.0 || c["reserved"] != 0.0 {
			t.Fatalf("credits = %v, want only the finished image charged", c)
		}
		wantAuditClean(t, s)
	})
}

func TestImageOnRunpod(t *testing.T) {
	shapes := map[string]imagegentest.OutputShape{"v5 base64": imagegentest.OutputV5Base64, "legacy base64": imagegentest.OutputLegacyBase64}
	statuses := map[string][]string{"FAILED": {"IN_QUEUE", "FAILED"}, "TIMED_OUT": {"TIMED_OUT"}, "CANCELLED": {"IN_PROGRESS", "CANCELLED"}}
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		run := func(t *testing.T, setup func(*imagegentest.RunpodFake)) (*testServer, *imagegentest.RunpodFake, string, map[string]any) {
			fake := imagegentest.NewRunpod(t)
			setup(fake)
			s := newTestServer(t, dialect, func(c *app.Config) {
				c.Images.Backend, c.Images.RunpodEndpointURL, c.Images.RunpodAPIKey = "runpod", fake.EndpointURL, fake.APIKey
				fastImages(c)
			})
			token := s.signup("a@example.com")
			job := s.createImage(token, map[string]any{"prompt": "a dog", "resolution": 1024}).json(t)
			return s, fake, token, s.waitImage(token, job["id"].(string))
		}
		for name, shape := range shapes {
			t.Run(name, func(t *testing.T) {
				s, fake, token, done := run(t, func(f *imagegentest.RunpodFake) { f.SetOutput(shape) })
				if done["status"] != "completed" {
					t.Fatalf("job = %v", done)
				}
				if _, data := s.fetch(done["image"].(map[string]any)["url"].(string)); !bytes.Equal(data, fake.Image()) {
					t.Fatal("stored image differs from Runpod's")
				}
				if c := s.credits(token); c["balance"] != 950.0 || c["reserved"] != 0.0 {
					t.Fatalf("credits = %v", c)
				}
			})
		}
		for name, script := range statuses {
			t.Run(name, func(t *testing.T) {
				s, _, token, done := run(t, func(f *imagegentest.RunpodFake) { f.SetScript(script...); f.SetError("worker exploded") })
				if done["status"] != "failed" {
					t.Fatalf("job = %v", done)
				}
				if c := s.credits(token); c["balance"] != 1000.0 || c["reserved"] != 0.0 {
					t.Fatalf("credits = %v", c)
				}
				wantAuditClean(t, s)
			})
		}
	})
}

func TestImageLimitsAndPrivacy(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect store.Dialect) {
		fake := imagegentest.NewComfyUI(t)
		fake.SetFinishAfterPolls(10)
		s := newComfyServer(t, dialect, fake, nil)
		alice, bob := s.signup("alice@example.com"), s.signup("bob@example.com")

		// Bad input.
		conv := s.do("POST", "/v1/conversations", bob, map[string]string{"modelId": "nope"})
		_ = conv
		for name, body := range map[string]map[string]any{
			"empty prompt":   {"prompt": "  ", "resolution": 512},
			"long prompt":    {"prompt": strings.Repeat("a", 2001), "resolution": 512},
			"bad resolution": {"prompt": "cat", "resolution": 640},
			"no resolution":  {"prompt": "cat"},
		} {
			if r := s.createImage(alice, body); r.status != 400 {
				t.Errorf("%s: %d %s", name, r.status, r.body)
			}
		}
		if r := s.createImage(alice, map[string]any{"prompt": "cat", "resolution": 512, "conversationId": "not-mine"}); r.status != 404 {
			t.Errorf("foreign conversation: %d %s", r.status, r.body)
		}

		// 30 concurrent requests with 1000 credits: never more than 20 held,
		// the rest refused with 402 or 429.
		var wg sync.WaitGroup
		codes := make(chan int, 30)
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := s.createImage(alice, map[string]any{"prompt": fmt.Sprintf("cat %d", i), "resolution": 512})
				codes <- r.status
			}()
		}
		wg.Wait()
		close(codes)
		count := map[int]int{}
		for c := range codes {
			count[c]++
		}
		if count[202] == 0 || count[202] > 20 || count[202]+count[402]+count[429] != 30 {
			t.Fatalf("statuses = %v", count)
		}
		if c := s.credits(alice); c["available"].(float64) < 0 || c["reserved"].(float64) > 1000 {
			t.Fatalf("credits = %v", c)
		}

		// Idempotent retries.
		first := s.createImage(bob, map[string]any{"prompt": "dog", "resolution": 512, "clientRequestId": "r-1"}).json(t)
		again := s.createImage(bob, map[string]any{"prompt": "dog", "resolution": 512, "clientRequestId": "r-1"}).json(t)
		if first["id"] != again["id"] {
			t.Fatalf("retried request made a second job")
		}
		done := s.waitImage(bob, first["id"].(string))
		if c := s.credits(bob); c["balance"] != 950.0 {
			t.Fatalf("bob's credits = %v, want one charge", c)
		}

		// Alice cannot see Bob's job, gallery entry or image.
		if r := s.do("GET", "/v1/images/"+first["id"].(string), alice, nil); r.status != 404 || r.errorCode(t) != "not_found" {
			t.Fatalf("alice reads bob's job: %d %s", r.status, r.body)
		}
		for _, item := range s.do("GET", "/v1/images", alice, nil).json(t)["items"].([]any) {
			if item.(map[string]any)["id"] == first["id"] {
				t.Fatal("bob's image in alice's gallery")
			}
		}
		// Tampered and expired URLs are refused.
		url := done["image"].(map[string]any)["url"].(string)
		if status, _ := s.fetch(url); status != 200 {
			t.Fatalf("signed URL: %d", status)
		}
		tampered := strings.Replace(url, "sig=", "sig=A", 1)
		otherPath := strings.Replace(url, first["id"].(string), "00000000-0000-0000-0000-000000000000", 1)
		expired := strings.Replace(url, "expires=", "expires=1", 1)
		for name, u := range map[string]string{"tampered": tampered, "other path": otherPath, "changed expiry": expired} {
			if status, _ := s.fetch(u); status != 403 && status != 404 {
				t.Errorf("%s URL: %d, want refused", name, status)
			}
		}
	})
}
