package events_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"luna/internal/events"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

func TestLocalBusDelivers(t *testing.T) {
	bus := events.NewLocal()
	testBus(t, bus, bus)
}

// Two buses on one PostgreSQL database stand for two instances: what one
// publishes, the other's subscribers receive.
func TestPostgresBusCrossesInstances(t *testing.T) {
	url := storetest.URL(t, store.Postgres)
	db, err := store.Open(context.Background(), url, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, readyA := events.NewPostgres(ctx, db.DB, url, nil)
	b, readyB := events.NewPostgres(ctx, db.DB, url, nil)
	<-readyA
	<-readyB
	testBus(t, a, b)
}

func testBus(t *testing.T, publisher, subscriber *events.Bus) {
	t.Helper()
	ctx := context.Background()
	alice := subscriber.SubscribeUser("alice")
	defer alice.Close()
	bob := subscriber.SubscribeUser("bob")
	defer bob.Close()
	msg := subscriber.SubscribeMessage("m1")
	defer msg.Close()

	if err := publisher.PublishUser(ctx, "alice", events.ImageUpdated, "019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-alice.C:
		if want := (events.Change{Type: events.ImageUpdated, ID: "019ad2c4-5c1e-7b3a-9f00-2d1c0b4e8a11"}); ev != want {
			t.Fatalf("change = %+v, want %+v", ev, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("alice got no event")
	}
	// A batch of message signals reaches the subscriber of one of them.
	ids := make([]string, 400)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%d", i)
	}
	if err := publisher.PublishMessages(ctx, ids); err != nil {
		t.Fatal(err)
	}
	select {
	case <-msg.C:
	case <-time.After(5 * time.Second):
		t.Fatal("no message signal")
	}
	// A batch arrives whole and in order: alice's changes, and the signal.
	var batch events.Batch
	want := []events.Change{{Type: events.MessageCreated, ID: "q"}, {Type: events.MessageCreated, ID: "r"},
		{Type: events.ConversationUpdated, ID: "c"}, {Type: events.CreditsUpdated}}
	for _, c := range want {
		batch.User("alice", c.Type, c.ID)
	}
	batch.Message("m1")
	if err := publisher.PublishBatch(ctx, &batch); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		select {
		case ev := <-alice.C:
			if ev != w {
				t.Fatalf("batch event %d = %+v, want %+v", i, ev, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("alice got %d of the batch's %d events", i, len(want))
		}
	}
	select {
	case <-msg.C:
	case <-time.After(5 * time.Second):
		t.Fatal("no message signal from the batch")
	}
	select {
	case ev := <-bob.C:
		t.Fatalf("bob got alice's event %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}

	// A session's end reaches its watches only; a user's end all of theirs.
	aliceOne, aliceTwo, bobOne := subscriber.WatchSession("alice", "k1"), subscriber.WatchSession("alice", "k2"), subscriber.WatchSession("bob", "k1")
	defer aliceOne.Close()
	defer aliceTwo.Close()
	defer bobOne.Close()
	ended := func(w *events.SessionWatch, within time.Duration) bool {
		select {
		case <-w.Ended:
			return true
		case <-time.After(within):
			return false
		}
	}
	if err := publisher.EndSessions(ctx, "alice", "k1"); err != nil {
		t.Fatal(err)
	}
	if !ended(aliceOne, 5*time.Second) {
		t.Fatal("alice's session k1 did not end")
	}
	if ended(aliceTwo, 100*time.Millisecond) || ended(bobOne, 0) {
		t.Fatal("ending alice's k1 ended another session")
	}
	if err := publisher.EndSessions(ctx, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if !ended(aliceTwo, 5*time.Second) {
		t.Fatal("ending all of alice's sessions left k2")
	}
	if ended(bobOne, 100*time.Millisecond) {
		t.Fatal("ending alice's sessions ended bob's")
	}
}

// A subscriber that stops reading is told to resync instead of blocking
// the publisher.
func TestSlowSubscriberLags(t *testing.T) {
	bus := events.NewLocal()
	sub := bus.SubscribeUser("u")
	defer sub.Close()
	for i := range 1000 {
		if err := bus.PublishUser(context.Background(), "u", events.MessageUpdated, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-sub.Lagged:
	default:
		t.Fatal("a subscriber 1000 events behind was not told to resync")
	}
}
