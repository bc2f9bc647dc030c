package credits_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"luna/internal/credits"
	"luna/internal/store"
	"luna/internal/store/storetest"
)

// The ledger simulation drives random operations against the real ledger on
// both databases and checks, after every step, that the audit passes and
// that no credit was created or lost. The default run is short enough for
// CI; the flags run it longer or replay one seed:
//
//	go test ./internal/credits -run Simulation -sim.seeds=10000
//	go test ./internal/credits -run Simulation -sim.seed=1234 -v
var (
	simSeeds = flag.Int("sim.seeds", simDefaultSeeds, "ledger simulation: how many seeds to run per database")
	simSeed  = flag.Int64("sim.seed", -1, "ledger simulation: run only this seed (printed by a failure)")
	simSteps = flag.Int("sim.steps", 60, "ledger simulation: operations per seed")
)

func TestLedgerSimulation(t *testing.T) {
	first, count := uint64(1), uint64(*simSeeds)
	if *simSeed >= 0 {
		first, count = uint64(*simSeed), 1
	}
	for _, dialect := range storetest.Dialects {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			workers := 2
			if dialect == store.Postgres {
				workers = 8 // PostgreSQL waits on round trips more than on the CPU
			}
			workers = min(workers, int(count))
			next := atomic.Uint64{}
			next.Store(first)
			var failed atomic.Bool
			var done atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range workers {
				fresh := newSimDatabase(t, dialect)
				wg.Go(func() {
					for !failed.Load() {
						seed := next.Add(1) - 1
						if seed >= first+count {
							return
						}
						if err := runSimulation(fresh, seed, *simSteps); err != nil {
							failed.Store(true)
							t.Errorf("%s seed %d failed (replay with -run TestLedgerSimulation/%s -sim.seed=%d):\n%v",
								dialect, seed, dialect, seed, err)
						}
						if n := done.Add(1); n%1000 == 0 {
							t.Logf("%s: %d seeds passed so far (%s)", dialect, n, time.Since(start).Round(time.Second))
						}
					}
				})
			}
			wg.Wait()
			t.Logf("%s: %d seeds × %d steps in %s", dialect, count, *simSteps, time.Since(start).Round(time.Millisecond))
		})
	}
}

// simDatabase hands out a freshly migrated, empty database per seed.
type simDatabase func() (open func() (*store.DB, error), err error)

func newSimDatabase(t *testing.T, dialect store.Dialect) simDatabase {
	t.Helper()
	ctx := context.Background()
	if dialect == store.SQLite {
		// A migrated file, copied for every seed.
		dir := t.TempDir()
		template := filepath.Join(dir, "template.db")
		db, err := store.Open(ctx, "sqlite:"+template, dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		db.Close()
		path := filepath.Join(dir, "sim.db")
		return func() (func() (*store.DB, error), error) {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(path + suffix)
			}
			if err := copyFile(template, path); err != nil {
				return nil, err
			}
			return func() (*store.DB, error) { return store.Open(ctx, "sqlite:"+path, dir) }, nil
		}
	}
	// One database per worker, emptied for every seed (TRUNCATE does not
	// fire the ledger's append-only row triggers).
	url := storetest.URL(t, dialect)
	db, err := store.Open(ctx, url, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return func() (func() (*store.DB, error), error) {
		if _, err := db.ExecContext(ctx, `TRUNCATE users, credit_reservations, credit_entries CASCADE`); err != nil {
			return nil, err
		}
		return func() (*store.DB, error) { return store.Open(ctx, url, "") }, nil
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// sim is one seed's run: the ledger under test and what the test expects
// of it, kept independently of the database.
type sim struct {
	ctx  context.Context
	rng  *rand.Rand
	open func() (*store.DB, error)
	db   *store.DB
	l    *credits.Ledger

	mu  sync.Mutex
	now time.Time // the ledger's clock

	users  []string
	holds  []string // every hold placed
	grants []simGrant

	granted   int64 // Σ credits granted and adjusted
	spent     int64 // Σ credits charged by settlements
	shortfall int64 // Σ shortfalls recorded
	trail     []string
}

type simGrant struct {
	user, key string
	amount    int64
}

func (s *sim) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *sim) note(format string, args ...any) {
	s.trail = append(s.trail, fmt.Sprintf(format, args...))
}

func (s *sim) connect() error {
	db, err := s.open()
	if err != nil {
		return err
	}
	s.db, s.l = db, credits.NewLedger(db, credits.WithClock(s.clock))
	return nil
}

func runSimulation(fresh simDatabase, seed uint64, steps int) (err error) {
	open, err := fresh()
	if err != nil {
		return fmt.Errorf("fresh database: %w", err)
	}
	s := &sim{ctx: context.Background(), rng: rand.New(rand.NewPCG(seed, 0x1d6e7)), open: open,
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := s.connect(); err != nil {
		return err
	}
	defer func() { s.db.Close() }()
	defer func() {
		if err != nil {
			from := max(0, len(s.trail)-12)
			err = fmt.Errorf("%w\nlast operations:\n  %s", err, strings.Join(s.trail[from:], "\n  "))
		}
	}()
	for i := range 1 + s.rng.IntN(3) {
		id := fmt.Sprintf("u%d", i)
		if _, err := s.db.ExecContext(s.ctx, `INSERT INTO users (id, provider, email, email_normalized, created_at, updated_at)
			VALUES ($1, 'local', $2, $2, 0, 0)`, id, id+"@example.com"); err != nil {
			return err
		}
		s.users = append(s.users, id)
		if err := s.grant(); err != nil {
			return err
		}
	}
	ops := []struct {
		weight int
		name   string
		do     func() error
	}{
		{8, "grant", s.grant},
		{4, "adjust", s.adjust},
		{24, "reserve", s.reserve},
		{20, "settle", s.settle},
		{8, "capture or release", s.captureOrRelease},
		{8, "sweep", s.sweep},
		{6, "renew", s.renew},
		{8, "clock jump", s.jump},
		{3, "crash and restart", s.restart},
		{8, "concurrent settlements", s.concurrent},
	}
	total := 0
	for _, op := range ops {
		total += op.weight
	}
	for step := range steps {
		pick := s.rng.IntN(total)
		for _, op := range ops {
			if pick -= op.weight; pick < 0 {
				s.note("step %d: %s", step, op.name)
				if err := op.do(); err != nil {
					return fmt.Errorf("step %d (%s): %w", step, op.name, err)
				}
				break
			}
		}
		if err := s.check(); err != nil {
			return fmt.Errorf("after step %d: %w", step, err)
		}
	}
	return nil
}

// check proves the ledger whole: the audit is clean, and the credits in
// the users' balances are exactly those granted minus those charged, as
// the test counted them; nobody's available credits are negative.
func (s *sim) check() error {
	report, err := s.l.Audit(s.ctx)
	if err != nil {
		return err
	}
	if len(report.Mismatches) > 0 {
		var lines []string
		for _, m := range report.Mismatches {
			lines = append(lines, m.String())
		}
		return fmt.Errorf("audit: %s", strings.Join(lines, "; "))
	}
	var balances, minAvailable, spent, shortfall int64
	if err := s.db.QueryRowContext(s.ctx, `SELECT
			(SELECT COALESCE(SUM(credits_balance), 0) FROM users),
			(SELECT COALESCE(MIN(credits_balance - credits_reserved), 0) FROM users),
			(SELECT COALESCE(SUM(CASE WHEN status = 'captured' THEN captured ELSE 0 END + extra_charged), 0) FROM credit_reservations),
			(SELECT COALESCE(SUM(shortfall), 0) FROM credit_reservations)`).Scan(&balances, &minAvailable, &spent, &shortfall); err != nil {
		return err
	}
	switch {
	case balances != s.granted-s.spent:
		return fmt.Errorf("credits created or lost: balances total %d, granted %d − charged %d = %d", balances, s.granted, s.spent, s.granted-s.spent)
	case spent != s.spent:
		return fmt.Errorf("holds say %d charged, settlements returned %d", spent, s.spent)
	case shortfall != s.shortfall:
		return fmt.Errorf("holds say %d short, settlements returned %d", shortfall, s.shortfall)
	case minAvailable < 0:
		return fmt.Errorf("available credits %d", minAvailable)
	}
	return nil
}

func (s *sim) user() string { return s.users[s.rng.IntN(len(s.users))] }

func (s *sim) hold() (string, bool) {
	if len(s.holds) == 0 {
		return "", false
	}
	// Mostly recent holds: those are the ones still active.
	n := len(s.holds)
	if s.rng.IntN(3) > 0 {
		return s.holds[n-1-s.rng.IntN(min(n, 4))], true
	}
	return s.holds[s.rng.IntN(n)], true
}

func (s *sim) available(user string) (int64, error) {
	c, err := s.l.Balance(s.ctx, user)
	return c.Available, err
}

func (s *sim) grant() error {
	if len(s.grants) > 0 && s.rng.IntN(4) == 0 {
		// A retry: the same request changes nothing; another amount under
		// the same key is refused.
		g := s.grants[s.rng.IntN(len(s.grants))]
		amount := g.amount
		if s.rng.IntN(2) == 0 {
			amount++
		}
		_, err := s.l.Grant(s.ctx, credits.GrantRequest{UserID: g.user, Amount: amount, IdempotencyKey: g.key})
		s.note("  retried grant %s %d: %v", g.key, amount, err)
		if amount == g.amount && err != nil {
			return fmt.Errorf("retried grant: %w", err)
		}
		if amount != g.amount && !errors.Is(err, credits.ErrIdempotencyConflict) {
			return fmt.Errorf("grant reusing a key: %v, want ErrIdempotencyConflict", err)
		}
		return nil
	}
	g := simGrant{user: s.user(), key: fmt.Sprintf("g%d", len(s.grants)), amount: 1 + s.rng.Int64N(300)}
	if _, err := s.l.Grant(s.ctx, credits.GrantRequest{UserID: g.user, Amount: g.amount, IdempotencyKey: g.key}); err != nil {
		return err
	}
	s.note("  grant %s %d", g.user, g.amount)
	s.grants = append(s.grants, g)
	s.granted += g.amount
	return nil
}

func (s *sim) adjust() error {
	user := s.user()
	amount := s.rng.Int64N(401) - 200
	if amount == 0 {
		amount = 1
	}
	available, err := s.available(user)
	if err != nil {
		return err
	}
	_, err = s.l.Adjust(s.ctx, credits.AdjustRequest{UserID: user, Amount: amount})
	s.note("  adjust %s %d (available %d): %v", user, amount, available, err)
	switch {
	case -amount > available:
		if !errors.Is(err, credits.ErrInsufficientCredits) {
			return fmt.Errorf("adjust %d with %d available: %v, want ErrInsufficientCredits", amount, available, err)
		}
	case err != nil:
		return err
	default:
		s.granted += amount
	}
	return nil
}

func (s *sim) reserve() error {
	user := s.user()
	amount := 1 + s.rng.Int64N(200)
	available, err := s.available(user)
	if err != nil {
		return err
	}
	req := credits.ReserveRequest{UserID: user, Amount: amount, TTL: time.Duration(1+s.rng.IntN(60)) * time.Minute,
		IdempotencyKey: fmt.Sprintf("r%d", len(s.holds)), Reference: fmt.Sprintf("message:%d", len(s.holds))}
	if s.rng.IntN(8) == 0 {
		// Placed inside a transaction that is then rolled back: nothing.
		err := s.db.InTx(s.ctx, func(tx *sql.Tx) error {
			if _, err := s.l.ReserveTx(s.ctx, tx, req); err != nil {
				return err
			}
			return errRollback
		})
		s.note("  reserve %s %d rolled back: %v", user, amount, err)
		if !errors.Is(err, errRollback) && !errors.Is(err, credits.ErrInsufficientCredits) {
			return err
		}
		return nil
	}
	r, err := s.l.Reserve(s.ctx, req)
	s.note("  reserve %s %d (available %d): %v", user, amount, available, err)
	if amount > available {
		if !errors.Is(err, credits.ErrInsufficientCredits) {
			return fmt.Errorf("reserve %d with %d available: %v, want ErrInsufficientCredits", amount, available, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	s.holds = append(s.holds, r.ID)
	if s.rng.IntN(5) == 0 {
		again, err := s.l.Reserve(s.ctx, req)
		if err != nil || again.ID != r.ID {
			return fmt.Errorf("retried reserve: %v, %v; want hold %s", again.ID, err, r.ID)
		}
	}
	return nil
}

var errRollback = errors.New("rolled back on purpose")

// cost picks what a settlement costs: nothing, within the hold, or beyond.
func (s *sim) cost(amount int64) int64 {
	switch s.rng.IntN(5) {
	case 0:
		return 0
	case 1, 2:
		return s.rng.Int64N(amount + 1)
	default:
		return amount + 1 + s.rng.Int64N(2*amount+50)
	}
}

// settle settles a hold at a random cost, sequentially, and checks the
// outcome against what the hold and the balance allowed.
func (s *sim) settle() error {
	id, ok := s.hold()
	if !ok {
		return nil
	}
	r, err := s.l.GetReservation(s.ctx, id)
	if err != nil {
		return err
	}
	available, err := s.available(r.UserID)
	if err != nil {
		return err
	}
	cost := s.cost(r.Amount)
	req := credits.SettleRequest{ReservationID: id, Cost: cost}
	var got credits.Settlement
	mode := s.rng.IntN(4)
	switch mode {
	case 0: // the caller's transaction rolls back (a crash before the commit): nothing happens
		err = s.db.InTx(s.ctx, func(tx *sql.Tx) error {
			if _, err := s.l.SettleTx(s.ctx, tx, req); err != nil {
				return err
			}
			return errRollback
		})
		s.note("  settle %s at %d, rolled back: %v", id, cost, err)
		if errors.Is(err, errRollback) || errors.Is(err, credits.ErrReservationSettled) {
			return nil
		}
		return err
	case 1: // inside the caller's transaction, which commits
		err = s.db.InTx(s.ctx, func(tx *sql.Tx) (err error) {
			got, err = s.l.SettleTx(s.ctx, tx, req)
			return err
		})
	default:
		got, err = s.l.Settle(s.ctx, req)
	}
	s.note("  settle %s (%s, hold %d, charged %d) at %d with %d available: %+v, %v",
		id, r.Status, r.Amount, r.ExtraCharged+r.Shortfall, cost, available, got, err)
	var want credits.Settlement
	switch {
	case r.Status == credits.StatusActive:
		spend := min(cost, r.Amount)
		extra := min(cost-spend, available)
		want = credits.Settlement{Charged: spend + extra, Shortfall: cost - spend - extra}
	case r.Status == credits.StatusCaptured || (cost > 0 && r.ExtraCharged+r.Shortfall > 0):
		if !errors.Is(err, credits.ErrReservationSettled) {
			return fmt.Errorf("settling a settled hold: %v, want ErrReservationSettled", err)
		}
		return nil
	default: // voided: a late completion pays from the available balance
		extra := min(cost, available)
		want = credits.Settlement{Charged: extra, Shortfall: cost - extra}
	}
	if err != nil {
		return err
	}
	if got.Charged != want.Charged || got.Shortfall != want.Shortfall {
		return fmt.Errorf("settlement charged %d, short %d; want %d, %d", got.Charged, got.Shortfall, want.Charged, want.Shortfall)
	}
	s.spent += got.Charged
	s.shortfall += got.Shortfall
	return nil
}

// captureOrRelease uses the two-phase primitives, sometimes on a hold
// already settled, in a transaction the caller commits whatever they
// answered (as the chat and image code once did).
func (s *sim) captureOrRelease() error {
	id, ok := s.hold()
	if !ok {
		return nil
	}
	r, err := s.l.GetReservation(s.ctx, id)
	if err != nil {
		return err
	}
	amount := s.rng.Int64N(r.Amount + 1)
	capture := s.rng.IntN(2) == 0
	var refused error
	err = s.db.InTx(s.ctx, func(tx *sql.Tx) error {
		key := fmt.Sprintf("cr%d:%s", s.rng.IntN(3), id)
		if capture {
			_, refused = s.l.CaptureTx(s.ctx, tx, credits.CaptureRequest{ReservationID: id, Amount: amount, IdempotencyKey: key})
		} else {
			_, refused = s.l.ReleaseTx(s.ctx, tx, credits.ReleaseRequest{ReservationID: id, IdempotencyKey: key})
		}
		return nil // committed whatever happened
	})
	if err != nil {
		return err
	}
	after, err := s.l.GetReservation(s.ctx, id)
	if err != nil {
		return err
	}
	s.note("  capture=%v %s (%s) %d: %v → %s", capture, id, r.Status, amount, refused, after.Status)
	switch {
	case r.Status != credits.StatusActive:
		if refused == nil && after.Status != r.Status {
			return fmt.Errorf("a settled hold changed from %s to %s", r.Status, after.Status)
		}
	case refused != nil:
		return fmt.Errorf("settling an active hold: %w", refused)
	case capture:
		s.spent += amount
	}
	return nil
}

// sweep voids the expired holds, and exactly those.
func (s *sim) sweep() error {
	var due int
	if err := s.db.QueryRowContext(s.ctx, `SELECT COUNT(*) FROM credit_reservations WHERE status = 'active' AND expires_at <= $1`,
		store.NowMillis(s.clock())).Scan(&due); err != nil {
		return err
	}
	n, err := s.l.SweepExpired(s.ctx, 1000)
	s.note("  sweep: %d of %d due: %v", n, due, err)
	if err == nil && n != due {
		return fmt.Errorf("swept %d holds, %d were due", n, due)
	}
	return err
}

// renew renews some holds, as live replies and image jobs do.
func (s *sim) renew() error {
	var ids []string
	for range 1 + s.rng.IntN(4) {
		if id, ok := s.hold(); ok {
			ids = append(ids, id)
		}
	}
	n, err := s.l.RenewHolds(s.ctx, ids, time.Duration(1+s.rng.IntN(60))*time.Minute)
	s.note("  renew %d holds: %d renewed: %v", len(ids), n, err)
	return err
}

// jump moves the clock, mostly forward past some expiries, sometimes a
// little back (a clock that was corrected).
func (s *sim) jump() error {
	d := time.Duration(s.rng.IntN(90)) * time.Minute
	if s.rng.IntN(10) == 0 {
		d = -time.Duration(s.rng.IntN(10)) * time.Minute
	}
	s.mu.Lock()
	s.now = s.now.Add(d)
	s.mu.Unlock()
	s.note("  clock %+v", d)
	return nil
}

// restart crashes (perhaps in the middle of a settlement, which is lost
// with its transaction), reopens the database, and does what start-up
// does: the orphaned work's holds are released, then the sweeper runs.
func (s *sim) restart() error {
	if id, ok := s.hold(); ok && s.rng.IntN(2) == 0 {
		tx, err := s.db.BeginTx(s.ctx, nil)
		if err != nil {
			return err
		}
		_, err = s.l.SettleTx(s.ctx, tx, credits.SettleRequest{ReservationID: id, Cost: s.rng.Int64N(100)})
		tx.Rollback() // the crash
		if err != nil && !errors.Is(err, credits.ErrReservationSettled) {
			return err
		}
	}
	if err := s.db.Close(); err != nil {
		return err
	}
	if err := s.connect(); err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	orphans := 0
	for _, id := range s.holds {
		if s.rng.IntN(2) == 0 {
			continue // owned by an image job that will resume, say
		}
		r, err := s.l.GetReservation(s.ctx, id)
		if err != nil {
			return err
		}
		if r.Status != credits.StatusActive {
			continue
		}
		if _, err := s.l.Settle(s.ctx, credits.SettleRequest{ReservationID: id}); err != nil {
			return fmt.Errorf("interrupt orphan: %w", err)
		}
		orphans++
	}
	s.note("  restarted: %d orphans released", orphans)
	return s.sweep()
}

// concurrent settles one hold from several goroutines at once (the reply
// finishing, the user stopping it, the orphan sweep, the expiry sweeper):
// whatever the interleaving, one settlement wins, a late charge happens at
// most once, and the rest change nothing.
func (s *sim) concurrent() error {
	id, ok := s.hold()
	if !ok {
		return nil
	}
	r, err := s.l.GetReservation(s.ctx, id)
	if err != nil {
		return err
	}
	if s.rng.IntN(2) == 0 {
		// Let the sweeper in on it.
		s.mu.Lock()
		s.now = s.now.Add(time.Hour)
		s.mu.Unlock()
	}
	type attempt struct {
		kind   int
		cost   int64
		result credits.Settlement
		err    error
	}
	attempts := make([]attempt, 2+s.rng.IntN(4))
	step := len(s.trail)
	for i := range attempts {
		attempts[i].kind = s.rng.IntN(4)
		attempts[i].cost = s.cost(r.Amount)
		if attempts[i].kind == 2 {
			attempts[i].cost = s.rng.Int64N(r.Amount + 1)
		}
	}
	var wg sync.WaitGroup
	for i := range attempts {
		a := &attempts[i]
		wg.Go(func() {
			switch a.kind {
			case 0: // a completion
				a.result, a.err = s.l.Settle(s.ctx, credits.SettleRequest{ReservationID: id, Cost: a.cost})
			case 1: // a failure or an interruption
				a.result, a.err = s.l.Settle(s.ctx, credits.SettleRequest{ReservationID: id})
			case 2: // a capture with its own key
				_, a.err = s.l.Capture(s.ctx, credits.CaptureRequest{ReservationID: id, Amount: a.cost,
					IdempotencyKey: fmt.Sprintf("cc%d.%d:%s", step, i, id)})
				a.result.Charged = a.cost
			default:
				_, a.err = s.l.SweepExpired(s.ctx, 1000)
			}
		})
	}
	wg.Wait()
	winners := 0
	for _, a := range attempts {
		s.note("  concurrent %d at %d on %s (%s): %+v, %v", a.kind, a.cost, id, r.Status, a.result, a.err)
		switch {
		case a.err == nil && a.kind != 3:
			s.spent += a.result.Charged
			s.shortfall += a.result.Shortfall
			if a.kind == 2 || a.result.Charged+a.result.Shortfall > 0 {
				winners++
			}
		case a.err != nil && !errors.Is(a.err, credits.ErrReservationSettled):
			return a.err
		}
	}
	if winners > 2 {
		// At most the hold's settlement and one late charge.
		return fmt.Errorf("%d settlements of one hold charged", winners)
	}
	return nil
}
