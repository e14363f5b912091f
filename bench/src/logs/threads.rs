//! Where the server's CPU goes, without a profiler: CPU time of each of its threads from
//! `/proc/<pid>/task/<tid>/stat`, grouped by thread name (trailing digits dropped, so the
//! tokio workers or tantivy's indexing threads add up). Threads that exit between two
//! snapshots take their time with them; the difference to the process total is reported as
//! such.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::procstat;

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// tid -> (name, CPU seconds)
    threads: HashMap<u32, (String, f64)>,
    process_cpu_secs: f64,
}

/// Name and CPU seconds from one `stat` line: `tid (name) S ... utime stime ...`.
fn parse_stat(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((
        name,
        (utime + stime) as f64 / procstat::clock_ticks() as f64,
    ))
}

/// A thread name without its number: `thrd-tantivy-index3` -> `thrd-tantivy-index`.
pub fn group_name(name: &str) -> String {
    let t = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let t = t.trim_end_matches(['-', '_', '#']);
    if t.is_empty() {
        name.to_string()
    } else {
        t.to_string()
    }
}

pub fn snapshot(pid: u32) -> Result<Snapshot> {
    let dir = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| BenchError::io(&dir, e))?;
    let mut threads = HashMap::new();
    for e in rd.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // a thread may exit between the listing and the read
        if let Ok(text) = std::fs::read_to_string(e.path().join("stat")) {
            if let Some(v) = parse_stat(&text) {
                threads.insert(tid, v);
            }
        }
    }
    Ok(Snapshot {
        threads,
        process_cpu_secs: procstat::process_cpu_secs(pid)?,
    })
}

/// Every thread seen since it started, with its last CPU reading.
#[derive(Clone, Debug)]
pub struct Sampler {
    pid: u32,
    seen: Snapshot,
}

impl Sampler {
    pub fn start(pid: u32) -> Result<Self> {
        Ok(Sampler {
            pid,
            seen: snapshot(pid)?,
        })
    }

    /// Reads every thread again; threads gone since keep their last reading.
    pub fn sample(&mut self) -> Result<()> {
        let now = snapshot(self.pid)?;
        self.seen.process_cpu_secs = now.process_cpu_secs;
        self.seen.threads.extend(now.threads);
        Ok(())
    }

    /// What has been seen so far, as a snapshot for [`diff`].
    pub fn seen(&self) -> Snapshot {
        self.seen.clone()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ThreadCpu {
    pub name: String,
    pub threads: usize,
    pub cpu_secs: f64,
}

/// CPU per thread group between two snapshots, most first, plus a row for threads that
/// exited in between (the process's total minus the rows).
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<ThreadCpu> {
    let mut groups: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    let mut sum = 0.0;
    for (tid, (name, cpu)) in &after.threads {
        let was = before.threads.get(tid).map(|(_, c)| *c).unwrap_or(0.0);
        let d = (cpu - was).max(0.0);
        let g = groups.entry(group_name(name)).or_default();
        g.0 += 1;
        g.1 += d;
        sum += d;
    }
    let mut out: Vec<ThreadCpu> = groups
        .into_iter()
        .filter(|(_, (_, cpu))| *cpu > 0.0)
        .map(|(name, (threads, cpu_secs))| ThreadCpu {
            name,
            threads,
            cpu_secs,
        })
        .collect();
    let gone = after.process_cpu_secs - before.process_cpu_secs - sum;
    if gone > 0.005 {
        out.push(ThreadCpu {
            name: "(threads that exited)".into(),
            threads: 0,
            cpu_secs: gone,
        });
    }
    out.sort_by(|a, b| b.cpu_secs.total_cmp(&a.cpu_secs));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_with_odd_names() {
        let line = "4242 (tokio-runtime-w) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        let (name, cpu) = parse_stat(line).unwrap();
        assert_eq!(name, "tokio-runtime-w");
        assert!((cpu - 300.0 / procstat::clock_ticks() as f64).abs() < 1e-9);
        let odd = "7 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 1 1 0 0 20 0";
        assert_eq!(parse_stat(odd).unwrap().0, "a (b) c");
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn groups_drop_numbers() {
        assert_eq!(group_name("thrd-tantivy-index3"), "thrd-tantivy-index");
        assert_eq!(group_name("logs-indexer-12"), "logs-indexer");
        assert_eq!(group_name("tokio-runtime-w"), "tokio-runtime-w");
        assert_eq!(group_name("42"), "42");
    }

    /// A named thread busy for `cpu` CPU-seconds, then parked until released.
    fn busy_thread(
        name: &str,
        cpu: f64,
    ) -> (
        std::thread::JoinHandle<u64>,
        std::sync::Arc<std::sync::Barrier>,
        std::sync::Arc<std::sync::Barrier>,
    ) {
        use std::sync::{Arc, Barrier};
        let (busy_done, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let (b, r) = (busy_done.clone(), release.clone());
        let h = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut x = 1u64;
                while procstat::thread_cpu_secs().unwrap() < cpu {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(31).wrapping_add(1);
                    }
                }
                b.wait();
                r.wait();
                x
            })
            .unwrap();
        (h, busy_done, release)
    }

    #[test]
    fn diff_of_own_process() {
        let pid = std::process::id();
        let a = snapshot(pid).unwrap();
        let (h, busy_done, release) = busy_thread("busy-worker-7", 0.3);
        busy_done.wait();
        let b = snapshot(pid).unwrap();
        release.wait();
        assert!(h.join().unwrap() != 0);
        let d = diff(&a, &b);
        let busy = d.iter().find(|t| t.name == "busy-worker").unwrap();
        assert!(busy.cpu_secs >= 0.25, "{d:?}");
    }

    #[test]
    fn the_sampler_keeps_exited_threads() {
        let pid = std::process::id();
        let mut s = Sampler::start(pid).unwrap();
        let base = s.seen();
        let (h, busy_done, release) = busy_thread("short-lived", 0.2);
        busy_done.wait();
        s.sample().unwrap();
        release.wait();
        assert!(h.join().unwrap() != 0);
        s.sample().unwrap();
        let d = diff(&base, &s.seen());
        let gone = d.iter().find(|t| t.name == "short-lived").unwrap();
        assert!(gone.cpu_secs >= 0.15, "{d:?}");
        // a plain snapshot no longer sees it
        assert!(!snapshot(pid)
            .unwrap()
            .threads
            .values()
            .any(|(n, _)| n == "short-lived"));
    }
}
