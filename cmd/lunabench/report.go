package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	ModelSlots      int     `json:"maxRequestsPerModel"`
	Database        string  `json:"database"` // "sqlite" or "postgres"
	Machine         machine `json:"machine"`

	Direct phaseReport `json:"direct"`
	Luna   phaseReport `json:"luna"`
	Added  added       `json:"added"` // Luna minus direct

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
	GapP50Ms        float64  `json:"interTokenP50Ms"`
	GapP90Ms        float64  `json:"interTokenP90Ms"`
	GapP99Ms        float64  `json:"interTokenP99Ms"`
	GapP999Ms       float64  `json:"interTokenP999Ms"`
	GapMaxMs        float64  `json:"interTokenMaxMs"`
	TailP50Ms       float64  `json:"lastTokenToEndP50Ms"`
	TailP99Ms       float64  `json:"lastTokenToEndP99Ms"`
	WallSeconds     float64  `json:"wallSeconds"`
	CPUSeconds      float64  `json:"cpuSeconds"`
	CPUPer1K        float64  `json:"cpuSecondsPer1kTokens"`
	// OtherCores is the CPU other processes used during the phase, in
	// cores (the PostgreSQL server excluded): the machine may be shared.
	OtherCores     float64 `json:"otherProcessesCores"`
	ActiveAtSample float64 `json:"activeStreamsAtSample"`
	HeapPerStream  float64 `json:"heapBytesPerStream"`
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
	ttft, gaps, tails := run.latencies()
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
	if r.Direct.Failed == 0 && r.Luna.Failed == 0 && r.Direct.TokensDelivered == r.Direct.TokensExpected &&
		r.Luna.TokensDelivered == r.Luna.TokensExpected {
		return nil
	}
	return fmt.Errorf("%w: direct %d, through Luna %d; tokens delivered %d/%d direct, %d/%d through Luna", errStreamsFailed,
		r.Direct.Failed, r.Luna.Failed, r.Direct.TokensDelivered, r.Direct.TokensExpected, r.Luna.TokensDelivered, r.Luna.TokensExpected)
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
	fmt.Fprintf(&b, "Luna:      %d conversations per user, --max-requests-per-model %d, other settings default\n", r.PerUser, r.ModelSlots)
	fmt.Fprintf(&b, "machine:   %d CPUs %s, %s %s, load average before: %s\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.OS, r.Machine.LoadAvg)
	row := func(name, direct, luna, add string) {
		fmt.Fprintf(&b, "%-34s %14s %14s %14s\n", name, direct, luna, add)
	}
	d, l, a := r.Direct, r.Luna, r.Added
	row("", "direct", "through Luna", "added")
	row("time to first token p50", fmtMs(d.TTFTP50Ms), fmtMs(l.TTFTP50Ms), plus(a.TTFTP50Ms, fmtMs))
	row("time to first token p99", fmtMs(d.TTFTP99Ms), fmtMs(l.TTFTP99Ms), plus(a.TTFTP99Ms, fmtMs))
	row("inter-token gap p50", fmtMs(d.GapP50Ms), fmtMs(l.GapP50Ms), plus(a.GapP50Ms, fmtMs))
	row("inter-token gap p99", fmtMs(d.GapP99Ms), fmtMs(l.GapP99Ms), plus(a.GapP99Ms, fmtMs))
	row("inter-token gap max", fmtMs(d.GapMaxMs), fmtMs(l.GapMaxMs), "")
	row("last token to end p50", fmtMs(d.TailP50Ms), fmtMs(l.TailP50Ms), plus(l.TailP50Ms-d.TailP50Ms, fmtMs))
	row("last token to end p99", fmtMs(d.TailP99Ms), fmtMs(l.TailP99Ms), plus(l.TailP99Ms-d.TailP99Ms, fmtMs))
	row("CPU seconds per 1,000 tokens", fmt.Sprintf("%.4f", d.CPUPer1K), fmt.Sprintf("%.4f", l.CPUPer1K), plus(a.CPUPer1K, func(v float64) string { return fmt.Sprintf("%.4f", v) }))
	row("live heap per active stream", fmtBytes(d.HeapPerStream), fmtBytes(l.HeapPerStream), plus(a.HeapPerStream, fmtBytes))
	row("RSS per active stream", fmtBytes(d.RSSPerStream), fmtBytes(l.RSSPerStream), plus(a.RSSPerStream, fmtBytes))
	row("goroutines per active stream", fmt.Sprintf("%.1f", d.GoroutinesPer), fmt.Sprintf("%.1f", l.GoroutinesPer), plus(a.GoroutinesPer, func(v float64) string { return fmt.Sprintf("%.1f", v) }))
	row("active streams when sampled", fmt.Sprintf("%.0f", d.ActiveAtSample), fmt.Sprintf("%.0f", l.ActiveAtSample), "")
	row("text events per token", fmtRatio(d.TextEvents, d.TokensDelivered), fmtRatio(l.TextEvents, l.TokensDelivered), "")
	row("tokens delivered / expected", fmt.Sprintf("%d/%d", d.TokensDelivered, d.TokensExpected),
		fmt.Sprintf("%d/%d", l.TokensDelivered, l.TokensExpected), "")
	row("failed streams", fmt.Sprint(d.Failed), fmt.Sprint(l.Failed), "")
	row("wall time", fmt.Sprintf("%.1f s", d.WallSeconds), fmt.Sprintf("%.1f s", l.WallSeconds), "")
	row("other processes' CPU (cores)", fmt.Sprintf("%.2f", d.OtherCores), fmt.Sprintf("%.2f", l.OtherCores), "")
	fmt.Fprintf(&b, "\nLuna's database during the Luna phase:\n")
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "  %-42s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("transactions committed by Luna (InTx)", "%d, %.1f/s", r.DB.Commits, r.DB.CommitsPerSecond)
	line(fmt.Sprintf("waits for a free connection (pool of %d)", r.DB.MaxOpenConns), "%d, %.1f s in total", r.DB.PoolWaits, r.DB.PoolWaitSeconds)
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
	}{{"direct", d.Errors}, {"through Luna", l.Errors}} {
		for _, e := range p.errs {
			fmt.Fprintf(&b, "error (%s): %s\n", p.name, e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
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
