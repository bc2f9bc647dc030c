package main

import (
	"fmt"
	"syscall"
)

// raiseOpenFiles makes sure the process may open need files: every
// loopback connection costs two descriptors here, one per end. It raises
// the soft limit, and the hard one too when allowed (root), and returns the
// limit in force.
func raiseOpenFiles(need uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= need {
		return lim.Cur, nil
	}
	want := syscall.Rlimit{Cur: need, Max: max(lim.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return need, nil
	}
	want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return lim.Cur, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", need, err)
	}
	return lim.Max, fmt.Errorf("RLIMIT_NOFILE is capped at %d, below the %d this run may need (raise it with ulimit -Hn as root)", lim.Max, need)
}
