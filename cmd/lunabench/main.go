// Command lunabench measures what Luna adds to streaming replies. It starts
// a fake OpenAI-compatible upstream in this process that streams a fixed
// reply at a set rate, then, for N concurrent conversations, streams it
// twice, side by side in one run: from the upstream directly, and through a
// whole Luna (app.New, real HTTP on loopback, SQLite or PostgreSQL). It
// reports the time to first token and inter-token gaps (p50/p99) of both and
// their difference, CPU seconds per 1,000 tokens, memory per active stream,
// and Luna's database transactions per second, and fails if any stream lost
// or repeated text.
//
//	go run ./cmd/lunabench -n 100 -rate 20 -tokens 200 [-database-url postgres://…] [-json]
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
	streams     int
	rate        float64
	tokens      int
	ramp        time.Duration
	prefill     time.Duration
	perUser     int
	databaseURL string
	jsonOut     bool
	timeout     time.Duration
	cpuProfile  string
	trace       string
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
	fs.IntVar(&c.perUser, "per-user", 10, "conversations per user (each user signs up once; sign-up hashes a password)")
	fs.StringVar(&c.databaseURL, "database-url", "", "empty: SQLite in a temporary directory; postgres://…: a server on which a fresh database is created, and dropped afterwards")
	fs.BoolVar(&c.jsonOut, "json", false, "write the report as JSON")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the Luna phase (this whole process: client, Luna, upstream) to this file")
	fs.StringVar(&c.trace, "trace", "", "write an execution trace of the Luna phase to this file (large: use a small -rate or -n)")
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
	// Luna→upstream) plus the send's, each with both ends in this process.
	if _, err := raiseOpenFiles(uint64(6*cfg.streams + 256)); err != nil {
		progress("warning: %v", err)
	}
	rep := report{
		Streams: cfg.streams, TokensPerReply: cfg.tokens, TokensPerSecond: cfg.rate,
		RampSeconds: cfg.ramp.Seconds(), PrefillMs: ms(cfg.prefill), Database: "sqlite", Machine: describeMachine(),
	}

	reply := newReplyText(cfg.tokens)
	up := newUpstream(reply, cfg.rate, cfg.prefill)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	upstreamServer := up.server()
	go upstreamServer.Serve(ln) //nolint:errcheck // ends with Close
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
	direct := &directClient{http: newHTTPClient(cfg.streams), baseURL: baseURL(ln), tokens: cfg.tokens}
	directRun := runPhase(ctx, cfg.streams, cfg.ramp, &reply, direct.stream)
	direct.http.CloseIdleConnections()
	if err := ctx.Err(); err != nil {
		return err
	}

	progress("starting Luna (%s)", rep.Database)
	dbURL := ""
	if pg != nil {
		dbURL = pg.url
	}
	luna, err := startLuna(ctx, dataDir, dbURL, baseURL(ln), cfg.tokens, stderr)
	if err != nil {
		return err
	}
	lunaStopped := false
	defer func() {
		if !lunaStopped {
			luna.stop() //nolint:errcheck // already failing
		}
	}()
	client := newHTTPClient(cfg.streams)
	defer client.CloseIdleConnections()
	progress("signing up %d users, creating %d conversations", (cfg.streams+cfg.perUser-1)/cfg.perUser, cfg.streams)
	convs, err := luna.setup(ctx, client, cfg.streams, cfg.perUser, runtime.NumCPU())
	if err != nil {
		return err
	}
	var xact0 int64
	var serverCPU0 time.Duration
	if pg != nil {
		progress("waiting %s for PostgreSQL's statistics to settle", statsFlushWait)
		select {
		case <-time.After(statsFlushWait):
		case <-ctx.Done():
			return ctx.Err()
		}
		if xact0, err = pg.xactCommit(ctx); err != nil {
			return err
		}
		serverCPU0, _ = pg.serverCPU()
	}

	progress("through Luna: %d streams", cfg.streams)
	lc := &lunaClient{http: client, url: luna.url, convs: convs, tokens: cfg.tokens}
	stopProfile, err := startProfiles(cfg.cpuProfile, cfg.trace)
	if err != nil {
		return err
	}
	commits0 := luna.app.DB().Transactions()
	lunaRun := runPhase(ctx, cfg.streams, cfg.ramp, &reply, lc.stream)
	commits := luna.app.DB().Transactions() - commits0
	if err := stopProfile(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Stopping Luna closes its connections: PostgreSQL backends publish
	// their statistics when they exit.
	lunaStopped = true
	if err := luna.stop(); err != nil {
		progress("warning: stop Luna: %v", err)
	}
	rep.LunaWarnings = luna.warnings.Load()

	rep.Direct = summarize(directRun, cfg.tokens)
	rep.Luna = summarize(lunaRun, cfg.tokens)
	rep.Added = difference(rep.Luna, rep.Direct)
	rep.DB.Commits = commits
	rep.DB.CommitsPerSecond = float64(commits) / lunaRun.wall.Seconds()
	if pg != nil {
		if err := pg.waitDisconnected(ctx); err != nil {
			progress("warning: %v", err)
		}
		xact1, err := pg.xactCommit(ctx)
		if err != nil {
			return err
		}
		n, perSecond := xact1-xact0, float64(xact1-xact0)/lunaRun.wall.Seconds()
		rep.DB.XactCommits, rep.DB.XactCommitsPerSecond = &n, &perSecond
		if serverCPU1, ok := pg.serverCPU(); ok {
			seconds := (serverCPU1 - serverCPU0).Seconds()
			per1K := seconds / float64(max(rep.Luna.TokensDelivered, 1)) * 1000
			rep.DB.ServerCPUSeconds, rep.DB.ServerCPUPer1K = &seconds, &per1K
			// The server is not one of the "other processes".
			rep.Luna.OtherCores = max(rep.Luna.OtherCores-seconds/rep.Luna.WallSeconds, 0)
		}
	}

	if cfg.jsonOut {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	return errors.Join(err, rep.failure())
}

// startProfiles starts a CPU profile and an execution trace into the
// files named (none when a name is empty) and returns the function that
// stops them.
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
