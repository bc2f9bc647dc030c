package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// peerConfig is a proxy measured in the same run: any OpenAI-compatible
// server (Portkey, LiteLLM, Bifrost…) that the operator has pointed at the
// fake upstream (-upstream-addr).
type peerConfig struct {
	url     string            // OpenAI-compatible base URL, e.g. http://127.0.0.1:8787/v1
	model   string            // the model field the peer expects; default the upstream's
	headers map[string]string // e.g. an API key or a provider selection
	pid     int               // the peer's process, for its CPU and memory; 0: unknown
}

// headerFlag collects repeated -peer-header "Name: value" flags.
type headerFlag map[string]string

func (h headerFlag) String() string { return fmt.Sprint(map[string]string(h)) }

func (h headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q: want Name: value", s)
	}
	h[strings.TrimSpace(name)] = strings.TrimSpace(value)
	return nil
}

// procTree measures a process and its descendants (a proxy may run
// workers) through /proc (Linux).
type procTree struct{ root int }

// sample returns the CPU time the tree has used (the root's reaped
// children included) and its resident memory; ok is false when the root
// cannot be read.
func (p procTree) sample() (cpu time.Duration, rss uint64, ok bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, false
	}
	parent := map[int]int{}
	stats := map[int]procStat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(pid); ok {
			parent[pid], stats[pid] = st.ppid, st
		}
	}
	root, ok := stats[p.root]
	if !ok {
		return 0, 0, false
	}
	ticks := root.cutime + root.cstime
	for pid, st := range stats {
		if !descends(pid, p.root, parent) {
			continue
		}
		ticks += st.utime + st.stime
		rss += residentBytesOf(pid)
	}
	return time.Duration(ticks) * time.Second / clockTicks, rss, true
}

// descends reports whether pid is root or one of its descendants.
func descends(pid, root int, parent map[int]int) bool {
	for range 64 { // deeper trees are not proxies
		if pid == root {
			return true
		}
		next, ok := parent[pid]
		if !ok || next == 0 || next == pid {
			return false
		}
		pid = next
	}
	return false
}

// residentBytesOf reads VmRSS of a process; 0 when unknown.
func residentBytesOf(pid int) uint64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(data) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			if f := bytes.Fields(rest); len(f) > 0 {
				kb, _ := strconv.ParseUint(string(f[0]), 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
