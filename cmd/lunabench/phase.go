package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// streamFunc runs stream i to its end, recording its tokens in rec (and
// setting rec.start just before its request is sent).
type streamFunc func(ctx context.Context, i int, rec *streamRecord) error

// phaseRun is what one phase measured: n streams started over ramp.
type phaseRun struct {
	records []*streamRecord
	errs    []error       // per stream; nil when it got exactly the expected reply
	wall    time.Duration // first send to last stream's end
	cpu     time.Duration // process user+system CPU over wall
	machine time.Duration // CPU time used by every process on the machine over wall; 0 if unknown
	base    memSample     // before the phase
	busy    memSample     // once every stream was flowing
	active  float64       // streams open when busy was taken
	// Another process's share (a peer proxy measured by -peer-pid): its
	// CPU over wall, and its resident memory before and at the sample.
	ext              bool
	extCPU           time.Duration
	extBase, extBusy uint64
}

// runPhase starts n streams, stream i at i×ramp/n, and waits for all of
// them. Once every stream has been started and has received its first
// token (or ended), it takes a memory sample: the live heap after a
// collection, so that garbage does not count, and the resident set once
// the runtime has given its free pages back. ext, when not nil, is another
// process measured alongside (its CPU and resident memory); atSample, when
// not nil, runs right after the memory sample (a heap profile).
func runPhase(ctx context.Context, n int, ramp time.Duration, reply *replyText, fn streamFunc, ext *procTree, atSample func()) phaseRun {
	run := phaseRun{records: make([]*streamRecord, n), errs: make([]error, n)}
	var extCPU0 time.Duration
	if ext != nil {
		extCPU0, run.extBase, run.ext = ext.sample()
	}
	measureExt := run.ext // read by the sampler below
	var active, flowing atomic.Int64
	allFlowing := make(chan struct{})
	markFlowing := func() {
		if flowing.Add(1) == int64(n) {
			close(allFlowing)
		}
	}
	debug.FreeOSMemory()
	run.base = readMem()
	cpu0, machine0 := cpuTime(), machineCPU()
	t0 := time.Now()

	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		select {
		case <-allFlowing:
		case <-ctx.Done():
			return
		}
		before := active.Load()
		debug.FreeOSMemory()
		run.busy = readMem()
		if atSample != nil {
			atSample()
		}
		if measureExt {
			_, run.extBusy, _ = ext.sample()
		}
		run.active = float64(before+active.Load()) / 2
	}()

	var wg sync.WaitGroup
	for i := range n {
		at := t0.Add(time.Duration(int64(ramp) * int64(i) / int64(n)))
		wg.Go(func() {
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			var once sync.Once
			flow := func() { once.Do(markFlowing) }
			rec := newStreamRecord(reply, flow)
			active.Add(1)
			err := fn(ctx, i, rec)
			active.Add(-1)
			flow()
			run.records[i], run.errs[i] = rec, err
		})
	}
	wg.Wait()
	run.wall = time.Since(t0)
	run.cpu = cpuTime() - cpu0
	if machine0 > 0 {
		run.machine = machineCPU() - machine0
	}
	var extCPU1 time.Duration
	extOK := measureExt
	if extOK {
		extCPU1, _, extOK = ext.sample()
	}
	<-sampled
	run.ext, run.extCPU = extOK, extCPU1-extCPU0
	return run
}

// memSample is the process's memory at one moment.
type memSample struct {
	heapLive   uint64 // bytes in live heap objects (HeapAlloc right after a GC)
	stack      uint64 // bytes of goroutine stacks (StackInuse)
	sys        uint64 // bytes the Go runtime got from the OS
	rss        uint64 // resident set size (includes SQLite's C-side memory); 0 if unknown
	goroutines int
}

func readMem() memSample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heapLive: ms.HeapAlloc, stack: ms.StackInuse, sys: ms.Sys, rss: residentBytes(), goroutines: runtime.NumGoroutine()}
}

// residentBytes reads VmRSS from /proc/self/status (Linux); 0 elsewhere.
func residentBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			fields := bytes.Fields(rest)
			if len(fields) > 0 {
				kb, _ := strconv.ParseUint(string(fields[0]), 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// cpuTime is the user plus system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the CPU time every process on the machine has used since
// boot (the first line of /proc/stat, Linux); 0 when unknown. The machine
// may be shared: the report shows how much of it others used.
func machineCPU() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0
	}
	var ticks int64
	// user nice system idle iowait irq softirq steal: all but idle and iowait.
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(string(v), 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// percentile returns the q-quantile (0 < q ≤ 1) of sorted by the
// nearest-rank method.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// latencies gathers, each sorted: the time to first token of every stream
// that got one, every inter-token gap, and the time from the last token to
// the stream's end (through Luna: the reply's completion being stored),
// and, through Luna, the time of each send request.
func (run phaseRun) latencies() (ttft, gaps, tails, sends []time.Duration) {
	for _, rec := range run.records {
		if rec == nil || rec.tokens == 0 {
			continue
		}
		ttft = append(ttft, rec.ttft)
		if rec.send > 0 {
			sends = append(sends, rec.send)
		}
		gaps = append(gaps, rec.gaps...)
		if !rec.end.IsZero() {
			tails = append(tails, rec.end.Sub(rec.last))
		}
	}
	slices.Sort(ttft)
	slices.Sort(gaps)
	slices.Sort(tails)
	slices.Sort(sends)
	return ttft, gaps, tails, sends
}
