// Command lunabench measures what Luna adds to streaming replies. It starts
// a fake OpenAI-compatible upstream in this process that streams a fixed
// reply at a set rate, then, for N concurrent conversations, streams it
// side by side in one run: from the upstream directly; through a minimal
// Go relay that copies the upstream's SSE lines with one flush per event
// (the floor any proxy costs); optionally through another proxy a user
// points at the upstream (-peer-url: Portkey, LiteLLM, Bifrost…); and
// through a whole Luna (app.New, real HTTP on loopback, SQLite or
// PostgreSQL). It reports the time to first token and inter-token gaps
// (p50/p99), CPU seconds per 1,000 tokens, memory per active stream, what
// each proxy adds to direct and Luna's figures as multiples of the relay's,
// and Luna's database transactions per second; it fails if any stream lost
// or repeated text.
//
//	go run ./cmd/lunabench -n 100 -rate 20 -tokens 200 [-database-url postgres://…] [-json]
//	go run ./cmd/lunabench -n 100 -upstream-addr 127.0.0.1:18080 -peer-url http://127.0.0.1:4000/v1 -peer-model bench -peer-header 'Authorization: Bearer sk-…'
//
// docs/performance.md explains the method and records results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "lunabench:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	streams      int
	rate         float64
	tokens       int
	ramp         time.Duration
	prefill      time.Duration
	perUser      int
	modelSlots   int
	databaseURL  string
	jsonOut      bool
	timeout      time.Duration
	h2c          bool
	cpuProfile   string
	memProfile   string
	trace        string
	upstreamAddr string
	peer         peerConfig
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("lunabench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.streams, "n", 100, "concurrent conversations (streams)")
	fs.Float64Var(&c.rate, "rate", 20, "tokens per second of each upstream stream")
	fs.IntVar(&c.tokens, "tokens", 200, "tokens per reply")
	fs.DurationVar(&c.ramp, "ramp", -1, "spread the sends evenly over this time (0: all at once; default: half a reply, tokens/rate/2, so that all streams run together for the second half)")
	fs.DurationVar(&c.prefill, "prefill", 0, "the upstream's delay before the first token")
	fs.IntVar(&c.perUser, "per-user", 3, "conversations per user, all running at once (Luna's --max-replies-per-user is set to it; its default is 3)")
	fs.IntVar(&c.modelSlots, "max-requests-per-model", 0, "Luna's --max-requests-per-model: upstream requests at once (default -n, so that no stream waits for a slot; Luna's own default is 64)")
	fs.StringVar(&c.databaseURL, "database-url", "", "empty: SQLite in a temporary directory; postgres://…: a server on which a fresh database is created, and dropped afterwards")
	fs.BoolVar(&c.jsonOut, "json", false, "write the report as JSON")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.BoolVar(&c.h2c, "h2c", false, "clients speak HTTP/2 without TLS (h2c) to the relay and to Luna, many streams per connection, as browsers do behind an HTTP/2 proxy; the upstream stays HTTP/1.1, like vLLM. A run needs about a third of the descriptors")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the Luna phase (this whole process: client, Luna, upstream) to this file")
	fs.StringVar(&c.memProfile, "memprofile", "", "write a heap profile of this process to this file when the Luna phase takes its memory sample (every stream flowing)")
	fs.StringVar(&c.trace, "trace", "", "write an execution trace of the Luna phase to this file (large: use a small -rate or -n)")
	fs.StringVar(&c.upstreamAddr, "upstream-addr", "127.0.0.1:0", "where the fake upstream listens; give a fixed address to point a peer proxy at http://ADDR/v1")
	fs.StringVar(&c.peer.url, "peer-url", "", "also stream through this OpenAI-compatible proxy (its base URL, e.g. http://127.0.0.1:4000/v1), set up to forward to the fake upstream at -upstream-addr")
	fs.StringVar(&c.peer.model, "peer-model", "", "the model field to send the peer (default: the upstream's, "+upstreamModel+")")
	c.peer.headers = headerFlag{}
	fs.Var(headerFlag(c.peer.headers), "peer-header", "a header to send the peer, \"Name: value\" (repeatable), e.g. an API key")
	fs.IntVar(&c.peer.pid, "peer-pid", 0, "the peer's process id, to measure its CPU and memory (with its descendants); without it, its CPU is the whole machine's but lunabench's")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lunabench [flags]\n\nStreams N replies from a fake upstream directly and through Luna, and compares.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.streams < 1, c.tokens < 1, c.perUser < 1:
		return c, errors.New("-n, -tokens and -per-user must be at least 1")
	case c.rate <= 0:
		return c, errors.New("-rate must be positive")
	case c.peer.url == "" && (c.peer.model != "" || len(c.peer.headers) > 0 || c.peer.pid != 0):
		return c, errors.New("-peer-model, -peer-header and -peer-pid need -peer-url")
	case c.peer.url != "" && strings.HasSuffix(c.upstreamAddr, ":0"):
		return c, errors.New("-peer-url needs -upstream-addr: a fixed address that the peer forwards to")
	}
	if c.modelSlots <= 0 {
		c.modelSlots = c.streams
	}
	if c.ramp < 0 {
		c.ramp = time.Duration(float64(c.tokens) / c.rate / 2 * float64(time.Second))
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, "lunabench: "+format+"\n", args...) }

	// Through Luna, each stream is two loopback connections (client→Luna,
	// Luna→upstream) plus the send's, each with both ends in this process;
	// with h2c, the clients' share a few connections.
	need := 6*cfg.streams + 256
	if cfg.h2c {
		need = 2*cfg.streams + 256
	}
	if _, err := raiseOpenFiles(uint64(need)); err != nil {
		progress("warning: %v", err)
	}
	rep := report{
		Streams: cfg.streams, TokensPerReply: cfg.tokens, TokensPerSecond: cfg.rate,
		RampSeconds: cfg.ramp.Seconds(), PrefillMs: ms(cfg.prefill), PerUser: cfg.perUser, ModelSlots: cfg.modelSlots,
		H2C: cfg.h2c, Database: "sqlite", Machine: describeMachine(),
	}

	reply := newReplyText(cfg.tokens)
	up := newUpstream(reply, cfg.rate, cfg.prefill)
	ln, err := net.Listen("tcp", cfg.upstreamAddr)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	rep.Upstream, rep.PeerURL = baseURL(ln), cfg.peer.url
	progress("fake upstream at %s (model %q)", baseURL(ln), upstreamModel)
	upstreamServer := up.server()
	go upstreamServer.Serve(ln) // ends with Close
	defer upstreamServer.Close()

	var pg *pgDatabase
	if cfg.databaseURL != "" {
		if pg, err = createPGDatabase(ctx, cfg.databaseURL); err != nil {
			return err
		}
		defer func() {
			if err := pg.drop(); err != nil {
				progress("warning: drop database %s: %v", pg.name, err)
			}
		}()
		rep.Database = "postgres"
	}
	dataDir, err := os.MkdirTemp("", "lunabench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)

	progress("direct: %d streams of %d tokens at %g tokens/s, sends spread over %s", cfg.streams, cfg.tokens, cfg.rate, cfg.ramp)
	direct := &directClient{http: newHTTPClient(cfg.streams, false), baseURL: baseURL(ln), tokens: cfg.tokens}
	directRun := runPhase(ctx, cfg.streams, cfg.ramp, &reply, direct.stream, nil, nil)
	direct.http.CloseIdleConnections()
	if err := ctx.Err(); err != nil {
		return err
	}
	progress("relay (floor): %d streams", cfg.streams)
	relayRun, err := measureRelay(ctx, cfg, baseURL(ln), &reply)
	if err != nil {
		return err
	}
	var peerRun *phaseRun
	if cfg.peer.url != "" {
		progress("peer %s: %d streams", cfg.peer.url, cfg.streams)
		run, err := measurePeer(ctx, cfg, &reply)
		if err != nil {
			return err
		}
		peerRun = &run
	}

	dbURL := ""
	if pg != nil {
		dbURL = pg.url
	}
	opts := lunaOptions{
		dataDir: dataDir, databaseURL: dbURL, upstreamURL: baseURL(ln), tokens: cfg.tokens,
		perUser: cfg.perUser, modelSlots: cfg.modelSlots, logs: stderr,
	}
	lunaRun, db, warnings, err := measureLuna(ctx, cfg, opts, &reply, pg, progress)
	if err != nil {
		return err
	}
	rep.Direct = summarize(directRun, cfg.tokens)
	rep.Relay = summarize(relayRun, cfg.tokens)
	rep.Luna = summarize(lunaRun, cfg.tokens)
	rep.Added = difference(rep.Luna, rep.Direct)
	rep.RelayAdded = difference(rep.Relay, rep.Direct)
	rep.LunaOverRelay = ratiosOf(rep.Added, rep.RelayAdded)
	if peerRun != nil {
		p := summarize(*peerRun, cfg.tokens)
		a, cpuFrom, memKnown := peerAdded(*peerRun, p, rep.Direct)
		over := ratiosOf(a, rep.RelayAdded)
		if !memKnown {
			over.RSSPerStream = nil
		}
		over.HeapPerStream = nil
		rep.Peer, rep.PeerAdded, rep.PeerOverRelay = &p, &a, &over
		rep.PeerCPUFrom, rep.PeerMemoryKnown = cpuFrom, memKnown
	}
	rep.DB, rep.LunaWarnings = db, warnings
	if db.ServerCPUSeconds != nil {
		// The PostgreSQL server is not one of the "other processes".
		rep.Luna.OtherCores = max(rep.Luna.OtherCores-*db.ServerCPUSeconds/rep.Luna.WallSeconds, 0)
	}

	if cfg.jsonOut {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	return errors.Join(err, rep.failure())
}

// measureRelay streams through the minimal relay in front of the upstream.
func measureRelay(ctx context.Context, cfg config, upstreamURL string, reply *replyText) (phaseRun, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return phaseRun{}, err
	}
	rl := &relay{upstream: upstreamURL, client: newHTTPClient(cfg.streams, false), h2c: cfg.h2c}
	srv := rl.server()
	go srv.Serve(ln) // ends with Close
	client := &directClient{http: newHTTPClient(cfg.streams, cfg.h2c), baseURL: baseURL(ln), tokens: cfg.tokens}
	run := runPhase(ctx, cfg.streams, cfg.ramp, reply, client.stream, nil, nil)
	client.http.CloseIdleConnections()
	srv.Close()
	rl.client.CloseIdleConnections()
	return run, ctx.Err()
}

// measurePeer streams through the peer proxy, measuring its process when
// -peer-pid names it.
func measurePeer(ctx context.Context, cfg config, reply *replyText) (phaseRun, error) {
	var ext *procTree
	if cfg.peer.pid > 0 {
		ext = &procTree{root: cfg.peer.pid}
		if _, _, ok := ext.sample(); !ok {
			return phaseRun{}, fmt.Errorf("-peer-pid %d: no such process readable in /proc", cfg.peer.pid)
		}
	}
	client := &directClient{http: newHTTPClient(cfg.streams, false), baseURL: strings.TrimRight(cfg.peer.url, "/"), tokens: cfg.tokens,
		model: cfg.peer.model, headers: cfg.peer.headers, optionalUsage: true}
	run := runPhase(ctx, cfg.streams, cfg.ramp, reply, client.stream, ext, nil)
	client.http.CloseIdleConnections()
	return run, ctx.Err()
}

// measureLuna starts Luna, signs up its users and creates the
// conversations, then runs the Luna phase and reports Luna's database work
// and how many warnings it logged. It stops Luna before reading
// PostgreSQL's counters: backends publish their statistics when they exit.
func measureLuna(ctx context.Context, cfg config, opts lunaOptions, reply *replyText, pg *pgDatabase,
	progress func(string, ...any)) (run phaseRun, db dbReport, warnings int64, err error) {
	progress("starting Luna")
	luna, err := startLuna(ctx, opts)
	if err != nil {
		return run, db, 0, err
	}
	stopped := false
	defer func() {
		if !stopped {
			luna.stop() // already failing
		}
	}()
	client := newHTTPClient(cfg.streams, cfg.h2c)
	defer client.CloseIdleConnections()
	progress("signing up %d users, creating %d conversations", (cfg.streams+cfg.perUser-1)/cfg.perUser, cfg.streams)
	convs, err := luna.setup(ctx, client, cfg.streams, cfg.perUser, runtime.NumCPU())
	if err != nil {
		return run, db, 0, err
	}
	var xact0 int64
	var serverCPU0 time.Duration
	if pg != nil {
		progress("waiting %s for PostgreSQL's statistics to settle", statsFlushWait)
		select {
		case <-time.After(statsFlushWait):
		case <-ctx.Done():
			return run, db, 0, ctx.Err()
		}
		if xact0, err = pg.xactCommit(ctx); err != nil {
			return run, db, 0, err
		}
		serverCPU0, _ = pg.serverCPU()
	}

	progress("through Luna: %d streams", cfg.streams)
	lc := &lunaClient{http: client, url: luna.url, convs: convs, tokens: cfg.tokens}
	stopProfiles, err := startProfiles(cfg.cpuProfile, cfg.trace)
	if err != nil {
		return run, db, 0, err
	}
	commits0, pool0 := luna.app.DB().Transactions(), luna.app.DB().Stats()
	statements0, _ := luna.app.DB().Statements()
	var atSample func()
	if cfg.memProfile != "" {
		atSample = func() {
			if err := writeHeapProfile(cfg.memProfile); err != nil {
				progress("warning: heap profile: %v", err)
			}
		}
	}
	run = runPhase(ctx, cfg.streams, cfg.ramp, reply, lc.stream, nil, atSample)
	commits, pool1 := luna.app.DB().Transactions()-commits0, luna.app.DB().Stats()
	statements1, counted := luna.app.DB().Statements()
	if err := stopProfiles(); err != nil {
		return run, db, 0, err
	}
	if err := ctx.Err(); err != nil {
		return run, db, 0, err
	}
	stopped = true
	if err := luna.stop(); err != nil {
		progress("warning: stop Luna: %v", err)
	}

	db = dbReport{
		Commits: commits, CommitsPerSecond: float64(commits) / run.wall.Seconds(), MaxOpenConns: pool1.MaxOpenConnections,
		PoolWaits: pool1.WaitCount - pool0.WaitCount, PoolWaitSeconds: (pool1.WaitDuration - pool0.WaitDuration).Seconds(),
	}
	if counted {
		n := statements1 - statements0
		perReply := float64(n) / float64(cfg.streams)
		db.Statements, db.StatementsPerReply = &n, &perReply
	}
	if pg != nil {
		if err := pg.waitDisconnected(ctx); err != nil {
			progress("warning: %v", err)
		}
		xact1, err := pg.xactCommit(ctx)
		if err != nil {
			return run, db, 0, err
		}
		n, perSecond := xact1-xact0, float64(xact1-xact0)/run.wall.Seconds()
		db.XactCommits, db.XactCommitsPerSecond = &n, &perSecond
		if serverCPU1, ok := pg.serverCPU(); ok {
			tokens := 0
			for _, rec := range run.records {
				if rec != nil {
					tokens += rec.tokens
				}
			}
			seconds := (serverCPU1 - serverCPU0).Seconds()
			per1K := seconds / float64(max(tokens, 1)) * 1000
			db.ServerCPUSeconds, db.ServerCPUPer1K = &seconds, &per1K
		}
	}
	return run, db, luna.warnings.Load(), nil
}

// startProfiles starts a CPU profile and an execution trace into the
// files named (none when a name is empty) and returns the function that
// stops them.
// writeHeapProfile writes the live heap (as of the last collection) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func startProfiles(cpuPath, tracePath string) (stop func() error, err error) {
	var stops []func() error
	stop = func() error {
		var errs []error
		for _, s := range stops {
			errs = append(errs, s())
		}
		return errors.Join(errs...)
	}
	start := func(path string, begin func(io.Writer) error, end func()) error {
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := begin(f); err != nil {
			f.Close()
			return err
		}
		stops = append(stops, func() error {
			end()
			return f.Close()
		})
		return nil
	}
	if err := start(cpuPath, pprof.StartCPUProfile, pprof.StopCPUProfile); err != nil {
		return nil, errors.Join(err, stop())
	}
	if err := start(tracePath, trace.Start, trace.Stop); err != nil {
		return nil, errors.Join(err, stop())
	}
	return stop, nil
}
