package service

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// runtimeLine is what SIGUSR1 logs: the process's goroutines, OS threads,
// Go heap (in use, and released to the kernel), resident set size and
// completed GC cycles, for scripts/soak.sh and anyone chasing a leak:
//
//	runtime: goroutines=12 threads=9 heap-inuse=3.1MiB heap-released=1.2MiB rss=11.4MiB gc=57
//
// It is called from the main loop (runtime.ReadMemStats stops the world
// for a moment; a signal is rare enough for that to be harmless).
func runtimeLine() string {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	threads, rss := procStatus()
	return fmt.Sprintf("runtime: goroutines=%d threads=%s heap-inuse=%s heap-released=%s rss=%s gc=%d",
		runtime.NumGoroutine(), threads, mib(m.HeapInuse), mib(m.HeapReleased), rss, m.NumGC)
}

// procStatus reads the thread count and VmRSS from /proc/self/status
// ("?" for one it cannot read).
func procStatus() (threads, rss string) {
	threads, rss = "?", "?"
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return threads, rss
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Threads":
			threads = v
		case "VmRSS":
			var kb uint64
			if _, err := fmt.Sscanf(v, "%d kB", &kb); err == nil {
				rss = mib(kb << 10)
			}
		}
	}
	return threads, rss
}

// mib formats n bytes as MiB with one decimal.
func mib(n uint64) string {
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}
