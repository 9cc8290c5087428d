// The W1 and W4 workloads of turnout's core benchmark (rust/core/benches/index.rs) on
// nats-server's sublist, printing rows of the same names, so both can be run one after
// the other on the same machine. Build and run with run.sh beside this file.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sys/unix"
)

var w1Tokens = []string{"synadia", "nats", "jetstream", "nkeys", "jwt", "deny", "auth", "drain"}

// sink keeps each match's result alive, so the compiler cannot drop the call.
var sink *server.SublistResult

func quick() bool { return os.Getenv("TURNOUT_BENCH_QUICK") != "" }

// selected says whether the case `name` was asked for (every case when no filter is given).
func selected(name string) bool {
	filters := []string{}
	for _, a := range os.Args[1:] {
		if !strings.HasPrefix(a, "--") {
			filters = append(filters, a)
		}
	}
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if strings.Contains(name, f) {
			return true
		}
	}
	return false
}

func w1Ops() int {
	if n, err := strconv.Atoi(os.Getenv("TURNOUT_BENCH_OPS")); err == nil {
		return n
	}
	if quick() {
		return 10_000
	}
	return 1_000_000
}

// w1Patterns: every combination of the 8 tokens at depths 1..5, and three wildcards.
func w1Patterns() []string {
	level := []string{""}
	all := []string{}
	for depth := 0; depth < 5; depth++ {
		next := []string{}
		for _, prefix := range level {
			for _, t := range w1Tokens {
				if prefix == "" {
					next = append(next, t)
				} else {
					next = append(next, prefix+"."+t)
				}
			}
		}
		level = next
		all = append(all, level...)
	}
	return append(all, "cloud.>", "cloud.nats.component.>", "cloud.*.*.nkeys.*")
}

// cpuClock: TURNOUT_BENCH_CLOCK=cpu times by the process's CPU time (every thread's,
// the collector's included), not the wall clock, as the core's bench does.
var cpuClock = os.Getenv("TURNOUT_BENCH_CLOCK") == "cpu"

// now is the time on the clock in use, in ns.
func now() int64 {
	if !cpuClock {
		return time.Now().UnixNano()
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// timePerOp runs op over inputs `rounds` times and prints the best round's ns per op.
func timePerOp(name string, inputs []string, rounds int, op func(string)) {
	timePerOpOf(name, len(inputs), func(i int) string { return inputs[i] }, rounds, op)
}

// timePerOpOf is timePerOp over the n inputs input(0..n): a repeated subject needs no
// slice of n copies, whose allocation would set the collector scanning in the timed loop.
func timePerOpOf(name string, n int, input func(int) string, rounds int, op func(string)) {
	if !selected(name) {
		return
	}
	// Each case starts from a collected heap: no cycle that setup began runs in the loop.
	runtime.GC()
	best := -1.0
	for r := 0; r < rounds; r++ {
		start := now()
		for i := 0; i < n; i++ {
			op(input(i))
		}
		ns := float64(now()-start) / float64(n)
		if best < 0 || ns < best {
			best = ns
		}
	}
	fmt.Printf("%-44s %9.1f ns/op\n", name, best)
}

func w1() {
	patterns := w1Patterns()
	n := w1Ops()
	rounds := 5
	if quick() {
		rounds = 1
	}
	for _, cacheSize := range []int{1024, 0} {
		// The sublist's cache is on or off; on, it holds up to 1,024 results.
		sl := server.NewSublist(cacheSize > 0)
		subs := make([]*server.SublistBenchSub, len(patterns))
		for i, p := range patterns {
			subs[i] = server.NewSublistBenchSub(p, "")
		}
		insert := fmt.Sprintf("W1 insert 37,448 (cache %d)", cacheSize)
		i := 0
		timePerOp(insert, patterns, 1, func(string) {
			if err := sl.Insert(subs[i]); err != nil {
				panic(err)
			}
			i++
		})
		for ; i < len(subs); i++ {
			if err := sl.Insert(subs[i]); err != nil {
				panic(err)
			}
		}
		match := func(s string) { sink = sl.Match(s) }
		for depth := 1; depth <= 4; depth++ {
			subject := strings.Join(w1Tokens[:depth], ".")
			timePerOpOf(fmt.Sprintf("W1 %d-token repeated (cache %d)", depth, cacheSize), n,
				func(int) string { return subject }, rounds, match)
		}
		name := fmt.Sprintf("W1 4-token unique (cache %d)", cacheSize)
		if selected(name) {
			unique := make([]string, n)
			for i := range unique {
				unique[i] = fmt.Sprintf("synadia.nats.u%d.nkeys", i)
			}
			timePerOp(name, unique, 1, match)
		}
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// w4: 1,000,000 entries, each on its own leaf, in the core bench's two shapes.
func w4() {
	n := 1_000_000
	if quick() {
		n = 20_000
	}
	shapes := []struct {
		name    string
		subject func(i int) string
	}{
		{"W4", func(i int) string { return fmt.Sprintf("w4.%d.%d.%d", i%100, (i/100)%100, i) }},
		{"W4 ws", func(i int) string { return fmt.Sprintf("ws.%d.build.%d", i%1000, i) }},
	}
	for _, shape := range shapes {
		if !selected(shape.name + " ") {
			continue
		}
		subjects := make([]string, n)
		subs := make([]*server.SublistBenchSub, n)
		for i := range subjects {
			subjects[i] = shape.subject(i)
			subs[i] = server.NewSublistBenchSub(subjects[i], "")
		}
		heapBefore := liveHeap()
		sl := server.NewSublistNoCache()
		start := now()
		for _, sub := range subs {
			if err := sl.Insert(sub); err != nil {
				panic(err)
			}
		}
		build := time.Duration(now() - start)
		heap := float64(liveHeap()-heapBefore) / float64(n)
		// The live heap, not resident memory: the collector returns pages as it likes.
		fmt.Printf("%-44s %9.1f ns/op (%.2f s total, %.0f B/entry live heap)\n",
			fmt.Sprintf("%s insert %d", shape.name, n),
			float64(build.Nanoseconds())/float64(n), build.Seconds(), heap)
		probe := []string{}
		for i := 0; i < n; i += 7 {
			probe = append(probe, subjects[i])
		}
		match := func(s string) { sink = sl.Match(s) }
		timePerOp(fmt.Sprintf("%s match at %d (cache off)", shape.name, n), probe, 3, match)
		small := server.NewSublistNoCache()
		for _, s := range subjects[:1000] {
			if err := small.Insert(server.NewSublistBenchSub(s, "")); err != nil {
				panic(err)
			}
		}
		probeSmall := make([]string, len(probe))
		for i := range probeSmall {
			probeSmall[i] = subjects[i%1000]
		}
		timePerOp(fmt.Sprintf("%s match at 1000 (cache off)", shape.name), probeSmall, 3,
			func(s string) { sink = small.Match(s) })
		runtime.KeepAlive(subs)
	}
}

func main() {
	w1()
	w4()
}
