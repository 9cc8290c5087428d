//! The core on the standard workloads W1, W2 and W4, with no Python in the loop,
//! comparable with nats-server's Go sublist run on the same inputs. Run:
//! `cargo bench -p turnout-core` (`TURNOUT_BENCH_QUICK=1` for a smoke run; words after
//! `--` keep only the cases whose name contains one of them, e.g. `-- repeated W4`).
//! `TURNOUT_BENCH_OPS=N` sets the operations per W1 case, so that two runs under
//! `valgrind --tool=callgrind` with different N give instructions per operation.
//! `TURNOUT_BENCH_CLOCK=cpu` times by the process's CPU time instead of the wall clock,
//! so that time spent waiting for a core on a loaded machine is not counted.

use std::hint::black_box;
use std::time::Instant;

use turnout_core::{KeyRouter, Matched, SubjectIndex};

const W1_TOKENS: [&str; 8] = [
    "synadia",
    "nats",
    "jetstream",
    "nkeys",
    "jwt",
    "deny",
    "auth",
    "drain",
];

fn quick() -> bool {
    std::env::var_os("TURNOUT_BENCH_QUICK").is_some()
}

/// Whether the case `name` was asked for (every case when no filter is given).
fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// Operations per W1 case.
fn w1_ops() -> usize {
    std::env::var("TURNOUT_BENCH_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick() { 10_000 } else { 1_000_000 })
}

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// nats-server's sublist benchmark set: every combination of the 8 tokens at depths 1..5.
fn w1_patterns() -> Vec<String> {
    let mut level = vec![String::new()];
    let mut all = Vec::new();
    for _ in 0..5 {
        level = level
            .iter()
            .flat_map(|prefix| {
                W1_TOKENS.iter().map(move |t| {
                    if prefix.is_empty() {
                        t.to_string()
                    } else {
                        format!("{prefix}.{t}")
                    }
                })
            })
            .collect();
        all.extend(level.iter().cloned());
    }
    all.extend(["cloud.>", "cloud.nats.component.>", "cloud.*.*.nkeys.*"].map(String::from));
    all
}

/// The process's CPU time in ns.
fn cpu_time_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// A stopwatch on the wall clock, or on CPU time with `TURNOUT_BENCH_CLOCK=cpu`.
enum Stopwatch {
    Wall(Instant),
    Cpu(u64),
}

impl Stopwatch {
    fn start() -> Self {
        if std::env::var("TURNOUT_BENCH_CLOCK").is_ok_and(|c| c == "cpu") {
            Self::Cpu(cpu_time_ns())
        } else {
            Self::Wall(Instant::now())
        }
    }

    fn elapsed_ns(&self) -> f64 {
        match self {
            Self::Wall(start) => start.elapsed().as_nanos() as f64,
            Self::Cpu(start) => (cpu_time_ns() - start) as f64,
        }
    }
}

/// Runs `op` over `inputs` `rounds` times and reports the best round's ns per op.
fn time_per_op<T>(name: &str, inputs: &[T], rounds: usize, mut op: impl FnMut(&T)) -> f64 {
    if !selected(name) {
        return f64::NAN;
    }
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Stopwatch::start();
        for input in inputs {
            op(input);
        }
        best = best.min(start.elapsed_ns() / inputs.len() as f64);
    }
    println!("{name:<44} {best:>9.1} ns/op");
    best
}

fn w1() {
    let patterns = w1_patterns();
    let n = w1_ops();
    let rounds = if quick() { 1 } else { 5 };
    for cache_size in [1024, 0] {
        let idx = SubjectIndex::new(cache_size);
        let insert = format!("W1 insert 37,448 (cache {cache_size})");
        if selected(&insert) {
            time_per_op(&insert, &patterns, 1, |p| {
                idx.insert(p, None, 0u32).unwrap();
            });
        } else {
            // The matches below are timed against the whole set, whichever cases run.
            for p in &patterns {
                idx.insert(p, None, 0u32).unwrap();
            }
        }
        for depth in 1..=4 {
            let subject = W1_TOKENS[..depth].join(".");
            let repeated = vec![subject.as_str(); n];
            time_per_op(
                &format!("W1 {depth}-token repeated (cache {cache_size})"),
                &repeated,
                rounds,
                |s| {
                    black_box(idx.matches(s));
                },
            );
            // The result lent, not shared: what Go's sublist does, handing out a pointer
            // its garbage collector keeps alive.
            time_per_op(
                &format!("W1 {depth}-token repeated, borrowed (cache {cache_size})"),
                &repeated,
                rounds,
                |s| {
                    idx.match_with(s, |m| {
                        black_box(m);
                    });
                },
            );
        }
        let subject = W1_TOKENS[..4].join(".");
        // Twice, so that the doorkeeper admits it and `count` finds it cached.
        drop((idx.matches(&subject), idx.matches(&subject)));
        let repeated = vec![subject.as_str(); n];
        time_per_op(
            &format!("W1 4-token repeated count (cache {cache_size})"),
            &repeated,
            rounds,
            |s| {
                black_box(idx.count(s));
            },
        );
        let name = format!("W1 4-token unique (cache {cache_size})");
        if !selected(&name) {
            continue;
        }
        let unique: Vec<String> = (0..n).map(|i| format!("synadia.nats.u{i}.nkeys")).collect();
        time_per_op(&name, &unique, 1, |s| {
            black_box(idx.matches(s));
        });
    }
}

/// W4: 1,000,000 entries, each on its own leaf, in two shapes: turnout's own
/// (`w4.<i%100>.<i/100%100>.<i>`, siblings inserted one after another) and the one where
/// consecutive inserts go to different parents (`ws.<i%1000>.build.<i>`, each parent's
/// child table growing while its children lie 1,000 nodes apart).
fn w4() {
    let n = if quick() { 20_000 } else { 1_000_000 };
    type Shape = (&'static str, fn(usize) -> String);
    let shapes: [Shape; 2] = [
        ("W4", |i| format!("w4.{}.{}.{i}", i % 100, (i / 100) % 100)),
        ("W4 ws", |i| format!("ws.{}.build.{i}", i % 1000)),
    ];
    let child = std::env::var("TURNOUT_BENCH_W4_SHAPE").ok();
    for (shape, subject) in shapes {
        match &child {
            // Each shape in a process of its own, so its resident memory is its own.
            None if selected(shape) => {
                let out = std::process::Command::new(std::env::current_exe().unwrap())
                    .env("TURNOUT_BENCH_W4_SHAPE", shape)
                    .output()
                    .unwrap();
                print!("{}", String::from_utf8_lossy(&out.stdout));
                continue;
            }
            Some(wanted) if wanted == shape => {}
            _ => continue,
        }
        let subjects: Vec<String> = (0..n).map(subject).collect();
        let before = resident_bytes();
        let idx = SubjectIndex::new(0);
        let start = Stopwatch::start();
        for s in &subjects {
            idx.insert(s, None, 0u32).unwrap();
        }
        let build = std::time::Duration::from_nanos(start.elapsed_ns() as u64);
        let per_entry = resident_bytes().saturating_sub(before) as f64 / n as f64;
        println!(
            "{:<44} {:>9.1} ns/op ({:.2} s total, {per_entry:.0} B/entry resident)",
            format!("{shape} insert {n}"),
            build.as_nanos() as f64 / n as f64,
            build.as_secs_f64()
        );
        let probe: Vec<&String> = subjects.iter().step_by(7).collect();
        time_per_op(
            &format!("{shape} match at {n} (cache off)"),
            &probe,
            3,
            |s| {
                black_box(idx.matches(s));
            },
        );
        let small = SubjectIndex::new(0);
        for s in subjects.iter().take(1_000) {
            small.insert(s, None, 0u32).unwrap();
        }
        let probe_small: Vec<&String> = subjects
            .iter()
            .take(1_000)
            .cycle()
            .take(probe.len())
            .collect();
        time_per_op(
            &format!("{shape} match at 1000 (cache off)"),
            &probe_small,
            3,
            |s| {
                black_box(small.matches(s));
            },
        );
    }
}

/// W2: one subject matching 1,000 entries, plain and in 10 queue groups of 100; the
/// match alone, and the match with every value read (what `.plain` / `.queues` then do).
fn w2() {
    let any = ["plain", "10 groups"].iter().any(|shape| {
        [1024, 0].iter().any(|cache| {
            ["match", "match + read"]
                .iter()
                .any(|what| selected(&format!("W2 1,000 {shape}: {what} (cache {cache})")))
        })
    });
    if !any {
        return;
    }
    let n = if quick() { 2_000 } else { 200_000 };
    let rounds = if quick() { 1 } else { 5 };
    let subject = "w2.fanout.orders";
    for groups in [0u32, 10] {
        let shape = if groups == 0 { "plain" } else { "10 groups" };
        for cache_size in [1024, 0] {
            let idx = SubjectIndex::new(cache_size);
            for i in 0..1_000u32 {
                let queue = (groups > 0).then(|| format!("q{}", i % groups));
                idx.insert(subject, queue.as_deref(), i).unwrap();
            }
            let calls = vec![subject; n];
            time_per_op(
                &format!("W2 1,000 {shape}: match (cache {cache_size})"),
                &calls,
                rounds,
                |s| {
                    black_box(idx.matches(s));
                },
            );
            time_per_op(
                &format!("W2 1,000 {shape}: match + read (cache {cache_size})"),
                &calls,
                rounds,
                |s| {
                    let m = idx.matches(s);
                    black_box(read_all(&m));
                },
            );
        }
    }
}

/// Reads every value of a result, as building the Python lists does.
fn read_all(m: &Matched<u32>) -> u64 {
    let plain: u64 = m.plain().map(|&v| u64::from(v)).sum();
    let queued: u64 = m
        .queues()
        .flat_map(|(_, members)| members)
        .map(|&v| u64::from(v))
        .sum();
    plain + queued
}

/// W6's routing step alone: build updates as JSON, routed by `workspace_name`.
fn w6() {
    if !selected("W6 route one build update") {
        return;
    }
    let n = if quick() { 10_000 } else { 1_000_000 };
    let names: Vec<String> = (0..10_000).map(|i| format!("ws-{i}")).collect();
    let router = KeyRouter::new(names.iter().map(String::as_str), "workspace_name");
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            format!(
                r#"{{"workspace_id":"6f1b8a8e-0000-4000-8000-{i:012}","workspace_name":"ws-{}","build_id":"7a1b8a8e-0000-4000-8000-{i:012}","transition":"start","job_status":"running","build_number":{i}}}"#,
                i % 10_000
            )
            .into_bytes()
        })
        .collect();
    time_per_op("W6 route one build update", &messages, 3, |m| {
        black_box(router.route(m));
    });
}

fn main() {
    if std::env::var_os("TURNOUT_BENCH_W4_SHAPE").is_some() {
        return w4();
    }
    w1();
    w2();
    w4();
    w6();
}
