package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"
)

// report is one run's figures, as printed and as -json writes them.
type report struct {
	Streams         int     `json:"streams"`
	TokensPerReply  int     `json:"tokensPerReply"`
	TokensPerSecond float64 `json:"tokensPerSecond"`
	RampSeconds     float64 `json:"rampSeconds"`
	PrefillMs       float64 `json:"prefillMs"`
	PerUser         int     `json:"conversationsPerUser"`
	H2C             bool    `json:"h2c"` // clients spoke HTTP/2 without TLS to the relay and Luna
	ModelSlots      int     `json:"maxRequestsPerModel"`
	Database        string  `json:"database"` // "sqlite" or "postgres"
	Machine         machine `json:"machine"`

	Upstream string `json:"upstream"`          // the fake upstream's base URL
	PeerURL  string `json:"peerUrl,omitempty"` // the peer proxy's base URL (-peer-url)

	Direct phaseReport  `json:"direct"`
	Relay  phaseReport  `json:"relay"` // through the minimal relay: the floor
	Luna   phaseReport  `json:"luna"`
	Peer   *phaseReport `json:"peer,omitempty"`

	Added      added  `json:"added"`      // Luna minus direct
	RelayAdded added  `json:"relayAdded"` // the relay minus direct
	PeerAdded  *added `json:"peerAdded,omitempty"`
	// PeerCPUFrom says where the peer's CPU comes from: "process" (the
	// -peer-pid process and its descendants) or "machine" (every process
	// but lunabench: on a shared machine, an upper bound). The peer's
	// memory is known with -peer-pid only (PeerMemoryKnown).
	PeerCPUFrom     string `json:"peerCpuFrom,omitempty"`
	PeerMemoryKnown bool   `json:"peerMemoryKnown,omitempty"`
	// LunaOverRelay is Luna's added figures divided by the relay's.
	LunaOverRelay ratios  `json:"lunaOverRelay"`
	PeerOverRelay *ratios `json:"peerOverRelay,omitempty"`

	DB dbReport `json:"db"`
	// LunaWarnings counts the warnings and errors Luna logged.
	LunaWarnings int64 `json:"lunaWarnings"`
}

// machine describes where the run happened.
type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel,omitempty"`
	GoVersion string `json:"goVersion"`
	OS        string `json:"os"`
	LoadAvg   string `json:"loadAvgBefore,omitempty"` // /proc/loadavg at the start: the machine may be shared
}

// phaseReport is what one phase measured.
type phaseReport struct {
	Failed          int      `json:"failedStreams"` // errors, lost or repeated text
	Errors          []string `json:"errors,omitempty"`
	TokensExpected  int      `json:"tokensExpected"`
	TokensDelivered int      `json:"tokensDelivered"`
	TextEvents      int      `json:"textEvents"` // chunks or deltas that carried text
	TTFTP50Ms       float64  `json:"ttftP50Ms"`
	TTFTP99Ms       float64  `json:"ttftP99Ms"`
	TTFTMaxMs       float64  `json:"ttftMaxMs"`
	// SendP50Ms and SendP99Ms: through Luna, the message POST alone (the
	// rest of the time to first token is the stream's GET).
	SendP50Ms   float64 `json:"sendP50Ms,omitempty"`
	SendP99Ms   float64 `json:"sendP99Ms,omitempty"`
	GapP50Ms    float64 `json:"interTokenP50Ms"`
	GapP90Ms    float64 `json:"interTokenP90Ms"`
	GapP99Ms    float64 `json:"interTokenP99Ms"`
	GapP999Ms   float64 `json:"interTokenP999Ms"`
	GapMaxMs    float64 `json:"interTokenMaxMs"`
	TailP50Ms   float64 `json:"lastTokenToEndP50Ms"`
	TailP99Ms   float64 `json:"lastTokenToEndP99Ms"`
	WallSeconds float64 `json:"wallSeconds"`
	CPUSeconds  float64 `json:"cpuSeconds"`
	CPUPer1K    float64 `json:"cpuSecondsPer1kTokens"`
	// OtherCores is the CPU other processes used during the phase, in
	// cores (the PostgreSQL server excluded): the machine may be shared.
	OtherCores     float64 `json:"otherProcessesCores"`
	ActiveAtSample float64 `json:"activeStreamsAtSample"`
	HeapPerStream  float64 `json:"heapBytesPerStream"`
	StackPerStream float64 `json:"stackBytesPerStream"`
	RSSPerStream   float64 `json:"rssBytesPerStream"`
	GoroutinesPer  float64 `json:"goroutinesPerStream"`
}

// added is Luna's cost: the Luna phase minus the direct phase.
type added struct {
	TTFTP50Ms     float64 `json:"ttftP50Ms"`
	TTFTP99Ms     float64 `json:"ttftP99Ms"`
	GapP50Ms      float64 `json:"interTokenP50Ms"`
	GapP99Ms      float64 `json:"interTokenP99Ms"`
	CPUPer1K      float64 `json:"cpuSecondsPer1kTokens"`
	HeapPerStream float64 `json:"heapBytesPerStream"`
	RSSPerStream  float64 `json:"rssBytesPerStream"`
	GoroutinesPer float64 `json:"goroutinesPerStream"`
}

// ratios is one proxy's added figures divided by the relay's: how many
// times the floor it costs. A ratio is null when the relay's figure is too
// close to zero to divide by (or the proxy's is unknown).
type ratios struct {
	TTFTP50       *float64 `json:"ttftP50"`
	TTFTP99       *float64 `json:"ttftP99"`
	GapP50        *float64 `json:"interTokenP50"`
	GapP99        *float64 `json:"interTokenP99"`
	CPUPer1K      *float64 `json:"cpuSecondsPer1kTokens"`
	HeapPerStream *float64 `json:"heapBytesPerStream"`
	RSSPerStream  *float64 `json:"rssBytesPerStream"`
}

// ratio is a / b, or nil when b is below min, or a is negative (the
// proxy measured faster than direct: noise) or unknown (NaN).
func ratio(a, b, min float64) *float64 {
	if b < min || a < 0 || math.IsNaN(a) {
		return nil
	}
	r := a / b
	return &r
}

func ratiosOf(a, floor added) ratios {
	return ratios{
		TTFTP50: ratio(a.TTFTP50Ms, floor.TTFTP50Ms, 0.05), TTFTP99: ratio(a.TTFTP99Ms, floor.TTFTP99Ms, 0.05),
		GapP50: ratio(a.GapP50Ms, floor.GapP50Ms, 0.05), GapP99: ratio(a.GapP99Ms, floor.GapP99Ms, 0.05),
		CPUPer1K:      ratio(a.CPUPer1K, floor.CPUPer1K, 0.0005),
		HeapPerStream: ratio(a.HeapPerStream, floor.HeapPerStream, 1024),
		RSSPerStream:  ratio(a.RSSPerStream, floor.RSSPerStream, 1024),
	}
}

// peerAdded is what the peer adds to direct: latencies from its phase,
// CPU and memory of its own process (-peer-pid) or, for the CPU, of the
// whole machine but lunabench.
func peerAdded(run phaseRun, peer, direct phaseReport) (a added, cpuFrom string, memKnown bool) {
	a = difference(peer, direct)
	a.HeapPerStream, a.GoroutinesPer = 0, 0 // not a part of this process
	a.RSSPerStream = 0
	cpu := max(run.machine-run.cpu, 0)
	cpuFrom = "machine"
	if run.ext {
		cpu, cpuFrom = run.extCPU, "process"
		if run.active > 0 {
			a.RSSPerStream = (float64(run.extBusy) - float64(run.extBase)) / run.active
			memKnown = true
		}
	}
	a.CPUPer1K = 0
	if peer.TokensDelivered > 0 {
		a.CPUPer1K = cpu.Seconds() / float64(peer.TokensDelivered) * 1000
	}
	return a, cpuFrom, memKnown
}

// dbReport is Luna's database work during the Luna phase.
type dbReport struct {
	Commits          int64   `json:"commits"` // transactions committed by Luna's store.DB.InTx
	CommitsPerSecond float64 `json:"commitsPerSecond"`
	// Luna's connection pool (database/sql): its size, and how often and
	// how long, in total, queries waited for a free connection.
	MaxOpenConns    int     `json:"maxOpenConns"`
	PoolWaits       int64   `json:"poolWaits"`
	PoolWaitSeconds float64 `json:"poolWaitSeconds"`
	// PostgreSQL only: the server's xact_commit (every statement outside a
	// transaction counts as one), and the server's CPU time when readable.
	// PostgreSQL only: statements Luna sent (BEGIN and COMMIT included;
	// store.DB.Statements), in all and per reply: a reply's send, stream
	// and completion plus its share of the background work (flushes,
	// sweeps, notifications).
	Statements           *int64   `json:"statements,omitempty"`
	StatementsPerReply   *float64 `json:"statementsPerReply,omitempty"`
	XactCommits          *int64   `json:"xactCommits,omitempty"`
	XactCommitsPerSecond *float64 `json:"xactCommitsPerSecond,omitempty"`
	ServerCPUSeconds     *float64 `json:"serverCpuSeconds,omitempty"`
	ServerCPUPer1K       *float64 `json:"serverCpuSecondsPer1kTokens,omitempty"`
}

// maxReportedErrors bounds the errors listed per phase.
const maxReportedErrors = 5

func summarize(run phaseRun, tokens int) phaseReport {
	r := phaseReport{TokensExpected: len(run.records) * tokens}
	for i, rec := range run.records {
		if rec != nil {
			r.TokensDelivered += rec.tokens
			r.TextEvents += rec.textEvents
		}
		if err := run.errs[i]; err != nil {
			r.Failed++
			if len(r.Errors) < maxReportedErrors {
				r.Errors = append(r.Errors, fmt.Sprintf("stream %d: %v", i, err))
			}
		}
	}
	ttft, gaps, tails, sends := run.latencies()
	if len(sends) > 0 {
		r.SendP50Ms, r.SendP99Ms = ms(percentile(sends, 0.50)), ms(percentile(sends, 0.99))
	}
	r.TTFTP50Ms, r.TTFTP99Ms, r.TTFTMaxMs = ms(percentile(ttft, 0.50)), ms(percentile(ttft, 0.99)), ms(percentile(ttft, 1))
	r.GapP50Ms, r.GapP90Ms, r.GapP99Ms = ms(percentile(gaps, 0.50)), ms(percentile(gaps, 0.90)), ms(percentile(gaps, 0.99))
	r.GapP999Ms, r.GapMaxMs = ms(percentile(gaps, 0.999)), ms(percentile(gaps, 1))
	r.TailP50Ms, r.TailP99Ms = ms(percentile(tails, 0.50)), ms(percentile(tails, 0.99))
	r.WallSeconds, r.CPUSeconds = run.wall.Seconds(), run.cpu.Seconds()
	if run.machine > 0 {
		r.OtherCores = max(run.machine-run.cpu, 0).Seconds() / r.WallSeconds
	}
	if r.TokensDelivered > 0 {
		r.CPUPer1K = r.CPUSeconds / float64(r.TokensDelivered) * 1000
	}
	r.ActiveAtSample = run.active
	if run.active > 0 {
		r.HeapPerStream = (float64(run.busy.heapLive) - float64(run.base.heapLive)) / run.active
		r.RSSPerStream = (float64(run.busy.rss) - float64(run.base.rss)) / run.active
		r.StackPerStream = (float64(run.busy.stack) - float64(run.base.stack)) / run.active
		r.GoroutinesPer = float64(run.busy.goroutines-run.base.goroutines) / run.active
	}
	return r
}

func difference(luna, direct phaseReport) added {
	return added{
		TTFTP50Ms: luna.TTFTP50Ms - direct.TTFTP50Ms, TTFTP99Ms: luna.TTFTP99Ms - direct.TTFTP99Ms,
		GapP50Ms: luna.GapP50Ms - direct.GapP50Ms, GapP99Ms: luna.GapP99Ms - direct.GapP99Ms,
		CPUPer1K:      luna.CPUPer1K - direct.CPUPer1K,
		HeapPerStream: luna.HeapPerStream - direct.HeapPerStream, RSSPerStream: luna.RSSPerStream - direct.RSSPerStream,
		GoroutinesPer: luna.GoroutinesPer - direct.GoroutinesPer,
	}
}

// errStreamsFailed is returned, after the report, when a stream failed or
// its text was lost or repeated.
var errStreamsFailed = errors.New("streams failed")

func (r *report) failure() error {
	phases := []struct {
		name string
		p    *phaseReport
	}{{"direct", &r.Direct}, {"relay", &r.Relay}, {"through Luna", &r.Luna}, {"peer", r.Peer}}
	var bad []string
	for _, ph := range phases {
		if ph.p != nil && (ph.p.Failed > 0 || ph.p.TokensDelivered != ph.p.TokensExpected) {
			bad = append(bad, fmt.Sprintf("%s: %d failed streams, %d/%d tokens", ph.name, ph.p.Failed, ph.p.TokensDelivered, ph.p.TokensExpected))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", errStreamsFailed, strings.Join(bad, "; "))
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeText(w io.Writer) error {
	var b strings.Builder
	dbName := "SQLite (one connection)"
	if r.Database == "postgres" {
		dbName = "PostgreSQL"
	}
	fmt.Fprintf(&b, "lunabench: %d streams × %d tokens at %g tokens/s, sends spread over %gs, %s\n",
		r.Streams, r.TokensPerReply, r.TokensPerSecond, r.RampSeconds, dbName)
	if r.H2C {
		fmt.Fprintf(&b, "clients:   HTTP/2 without TLS (h2c) to the relay and Luna; HTTP/1.1 to the upstream\n")
	}
	fmt.Fprintf(&b, "Luna:      %d conversations per user, --max-requests-per-model %d, other settings default\n", r.PerUser, r.ModelSlots)
	fmt.Fprintf(&b, "machine:   %d CPUs %s, %s %s, load average before: %s\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.OS, r.Machine.LoadAvg)
	fmt.Fprintf(&b, "upstream:  %s", r.Upstream)
	if r.PeerURL != "" {
		fmt.Fprintf(&b, "; peer: %s", r.PeerURL)
	}
	b.WriteString("\n\n")
	// The figures of each phase.
	phases := []phaseReport{r.Direct, r.Relay, r.Luna}
	names := []string{"direct", "relay (floor)", "through Luna"}
	if r.Peer != nil {
		phases, names = append(phases, *r.Peer), append(names, "peer")
	}
	row := func(name string, cells ...string) {
		fmt.Fprintf(&b, "%-40s", name)
		for _, c := range cells {
			fmt.Fprintf(&b, " %14s", c)
		}
		b.WriteString("\n")
	}
	each := func(name string, f func(p phaseReport) string) {
		cells := make([]string, len(phases))
		for i, p := range phases {
			cells[i] = f(p)
		}
		row(name, cells...)
	}
	b.WriteString("Each phase as its clients see it; CPU and memory are this process's (client, upstream, relay and Luna run in it, a peer apart):\n")
	row("", names...)
	each("time to first token p50", func(p phaseReport) string { return fmtMs(p.TTFTP50Ms) })
	each("time to first token p99", func(p phaseReport) string { return fmtMs(p.TTFTP99Ms) })
	sendCell := func(v float64) string {
		if v == 0 {
			return ""
		}
		return fmtMs(v)
	}
	each("… of which the send (POST) p50", func(p phaseReport) string { return sendCell(p.SendP50Ms) })
	each("… of which the send (POST) p99", func(p phaseReport) string { return sendCell(p.SendP99Ms) })
	each("inter-token gap p50", func(p phaseReport) string { return fmtMs(p.GapP50Ms) })
	each("inter-token gap p99", func(p phaseReport) string { return fmtMs(p.GapP99Ms) })
	each("inter-token gap max", func(p phaseReport) string { return fmtMs(p.GapMaxMs) })
	each("last token to end p50", func(p phaseReport) string { return fmtMs(p.TailP50Ms) })
	each("last token to end p99", func(p phaseReport) string { return fmtMs(p.TailP99Ms) })
	each("CPU s per 1,000 tokens (this process)", func(p phaseReport) string { return fmt.Sprintf("%.4f", p.CPUPer1K) })
	each("live heap per active stream", func(p phaseReport) string { return fmtBytes(p.HeapPerStream) })
	each("goroutine stacks per active stream", func(p phaseReport) string { return fmtBytes(p.StackPerStream) })
	each("RSS per active stream", func(p phaseReport) string { return fmtBytes(p.RSSPerStream) })
	each("goroutines per active stream", func(p phaseReport) string { return fmt.Sprintf("%.1f", p.GoroutinesPer) })
	each("active streams when sampled", func(p phaseReport) string { return fmt.Sprintf("%.0f", p.ActiveAtSample) })
	each("text events per token", func(p phaseReport) string { return fmtRatio(p.TextEvents, p.TokensDelivered) })
	each("tokens delivered / expected", func(p phaseReport) string { return fmt.Sprintf("%d/%d", p.TokensDelivered, p.TokensExpected) })
	each("failed streams", func(p phaseReport) string { return fmt.Sprint(p.Failed) })
	each("wall time", func(p phaseReport) string { return fmt.Sprintf("%.1f s", p.WallSeconds) })
	each("other processes' CPU (cores)", func(p phaseReport) string { return fmt.Sprintf("%.2f", p.OtherCores) })

	// What each proxy adds to direct, and how many times the floor.
	fmt.Fprintf(&b, "\nAdded to direct (the proxy's own cost), and as a multiple of the relay's:\n")
	cols := []string{"relay (floor)", "through Luna", "Luna ÷ relay"}
	if r.PeerAdded != nil {
		cols = append(cols, "peer", "peer ÷ relay")
	}
	row("", cols...)
	cpu := func(v float64) string { return fmt.Sprintf("%.4f", v) }
	goroutines := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	addedRow := func(name string, get func(added) float64, format func(float64) string, rat func(ratios) *float64, peerKnown bool) {
		cells := []string{plus(get(r.RelayAdded), format), plus(get(r.Added), format), fmtTimes(rat(r.LunaOverRelay))}
		if r.PeerAdded != nil {
			if peerKnown {
				cells = append(cells, plus(get(*r.PeerAdded), format), fmtTimes(rat(*r.PeerOverRelay)))
			} else {
				cells = append(cells, "n/a", "")
			}
		}
		row(name, cells...)
	}
	none := func(ratios) *float64 { return nil }
	addedRow("time to first token p50", func(a added) float64 { return a.TTFTP50Ms }, fmtMs, func(x ratios) *float64 { return x.TTFTP50 }, true)
	addedRow("time to first token p99", func(a added) float64 { return a.TTFTP99Ms }, fmtMs, func(x ratios) *float64 { return x.TTFTP99 }, true)
	addedRow("inter-token gap p50", func(a added) float64 { return a.GapP50Ms }, fmtMs, func(x ratios) *float64 { return x.GapP50 }, true)
	addedRow("inter-token gap p99", func(a added) float64 { return a.GapP99Ms }, fmtMs, func(x ratios) *float64 { return x.GapP99 }, true)
	addedRow("CPU seconds per 1,000 tokens", func(a added) float64 { return a.CPUPer1K }, cpu, func(x ratios) *float64 { return x.CPUPer1K }, true)
	addedRow("live heap per active stream", func(a added) float64 { return a.HeapPerStream }, fmtBytes, func(x ratios) *float64 { return x.HeapPerStream }, false)
	addedRow("RSS per active stream", func(a added) float64 { return a.RSSPerStream }, fmtBytes, func(x ratios) *float64 { return x.RSSPerStream }, r.PeerMemoryKnown)
	addedRow("goroutines per active stream", func(a added) float64 { return a.GoroutinesPer }, goroutines, none, false)
	if r.PeerAdded != nil {
		switch r.PeerCPUFrom {
		case "process":
			fmt.Fprintf(&b, "peer: CPU and RSS of its process (-peer-pid) and descendants; latencies as its clients see them\n")
		default:
			fmt.Fprintf(&b, "peer: CPU of every process but lunabench (no -peer-pid: on a shared machine, an upper bound); memory unknown\n")
		}
	}
	fmt.Fprintf(&b, "\nLuna's database during the Luna phase:\n")
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "  %-42s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("transactions committed by Luna (InTx)", "%d, %.1f/s", r.DB.Commits, r.DB.CommitsPerSecond)
	line(fmt.Sprintf("waits for a free connection (pool of %d)", r.DB.MaxOpenConns), "%d, %.1f s in total", r.DB.PoolWaits, r.DB.PoolWaitSeconds)
	if r.DB.Statements != nil {
		line("statements sent by Luna (BEGIN, COMMIT too)", "%d, %.1f per reply (its send, stream and completion, and its share of flushes and sweeps)", *r.DB.Statements, *r.DB.StatementsPerReply)
	}
	if r.DB.XactCommits != nil {
		line("PostgreSQL xact_commit", "%d, %.1f/s (every statement outside a transaction counts)", *r.DB.XactCommits, *r.DB.XactCommitsPerSecond)
	}
	if r.DB.ServerCPUSeconds != nil {
		line("PostgreSQL server CPU", "%.2f s, %.4f s per 1,000 tokens (not in the figures above)", *r.DB.ServerCPUSeconds, *r.DB.ServerCPUPer1K)
	}
	line("Luna warnings and errors logged", "%d", r.LunaWarnings)
	for _, p := range []struct {
		name string
		errs []string
	}{{"direct", r.Direct.Errors}, {"relay", r.Relay.Errors}, {"through Luna", r.Luna.Errors}, {"peer", peerErrors(r.Peer)}} {
		for _, e := range p.errs {
			fmt.Fprintf(&b, "error (%s): %s\n", p.name, e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func peerErrors(p *phaseReport) []string {
	if p == nil {
		return nil
	}
	return p.Errors
}

// fmtTimes formats a ratio as "2.3×", or "n/a".
func fmtTimes(r *float64) string {
	if r == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f×", *r)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMs(v float64) string { return fmt.Sprintf("%.1f ms", v) }

// plus formats a difference with its sign.
func plus(v float64, format func(float64) string) string {
	if v < 0 && format(-v) != format(0) {
		return "-" + format(-v)
	}
	return "+" + format(max(v, 0))
}

func fmtBytes(v float64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%s%.2f MiB", sign, v/(1<<20))
	default:
		return fmt.Sprintf("%s%.1f KiB", sign, v/(1<<10))
	}
}

func fmtRatio(a, b int) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// describeMachine reads the CPU model and load average (Linux).
func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}
