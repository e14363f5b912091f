//! Process accounting from `/proc`: CPU time (utime+stime) and peak resident memory (VmHWM)
//! of a server process, and CPU time of the calling thread for the in-process null sink.

use std::path::{Path, PathBuf};

use crate::error::{BenchError, Result};

/// Kernel clock ticks per second, as `getconf CLK_TCK` reports (100 on every mainstream Linux).
pub fn clock_ticks() -> u64 {
    // asked once: the query benchmark reads CPU around every request
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(ask_clock_ticks)
}

fn ask_clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Fields of `/proc/<pid>/stat` after the command name, which may itself contain spaces and
/// parentheses (so split at the last `)`).
fn stat_fields(path: &Path, pid: u32) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| BenchError::Proc {
        pid,
        what: "stat",
        reason: format!("{}: {e}", path.display()),
    })?;
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| BenchError::Proc {
            pid,
            what: "stat",
            reason: format!("no ')' in {text:?}"),
        })?;
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU seconds (user + system) and the process state letter.
fn cpu_and_state(path: &Path, pid: u32) -> Result<(f64, char)> {
    let f = stat_fields(path, pid)?;
    // after the comm field: state is field 3 (index 0), utime 14 (index 11), stime 15 (index 12)
    let parse = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| BenchError::Proc {
                pid,
                what: "stat",
                reason: format!("field {} missing or not a number", i + 3),
            })
    };
    let ticks = parse(11)? + parse(12)?;
    let state = f.first().and_then(|s| s.chars().next()).unwrap_or('?');
    Ok((ticks as f64 / clock_ticks() as f64, state))
}

/// CPU seconds a process has used so far (all its threads).
pub fn process_cpu_secs(pid: u32) -> Result<f64> {
    cpu_and_state(&PathBuf::from(format!("/proc/{pid}/stat")), pid).map(|(c, _)| c)
}

/// CPU seconds and whether the process has exited but not yet been reaped (a zombie keeps its
/// final totals readable, which is how the CPU of a shutdown flush is counted).
pub fn process_cpu_and_zombie(pid: u32) -> Result<(f64, bool)> {
    cpu_and_state(&PathBuf::from(format!("/proc/{pid}/stat")), pid).map(|(c, s)| (c, s == 'Z'))
}

/// CPU seconds of the calling thread.
pub fn thread_cpu_secs() -> Result<f64> {
    cpu_and_state(Path::new("/proc/thread-self/stat"), std::process::id()).map(|(c, _)| c)
}

/// CPU seconds the whole machine has been busy (every CPU, all but idle and iowait), from
/// the first line of `/proc/stat`.
pub fn machine_busy_secs() -> Result<f64> {
    let text =
        std::fs::read_to_string("/proc/stat").map_err(|e| BenchError::io("/proc/stat", e))?;
    let line = text.lines().next().unwrap_or("");
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if fields.len() < 5 || !line.starts_with("cpu ") {
        return Err(BenchError::Proc {
            pid: 0,
            what: "stat",
            reason: format!("unexpected first line of /proc/stat: {line:?}"),
        });
    }
    // user nice system idle iowait irq softirq steal ...; guest time is already in user
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Ok(busy as f64 / clock_ticks() as f64)
}

/// Peak resident set size (`VmHWM`) in bytes.
pub fn peak_rss_bytes(pid: u32) -> Result<u64> {
    status_kb(pid, "VmHWM:")
}

/// Current resident set size (`VmRSS`) in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    status_kb(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_kb(pid: u32, field: &'static str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::Proc {
        pid,
        what: "status",
        reason: format!("{path}: {e}"),
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| BenchError::Proc {
            pid,
            what: "status",
            reason: format!("no {field} line"),
        })
}

/// Total size in bytes of the regular files below `path` (0 if it does not exist).
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu_secs(pid).unwrap() >= 0.0);
        assert!(thread_cpu_secs().unwrap() >= 0.0);
        assert!(peak_rss_bytes(pid).unwrap() > 1024 * 1024);
        assert!(rss_bytes(pid).unwrap() <= peak_rss_bytes(pid).unwrap());
        let (_, zombie) = process_cpu_and_zombie(pid).unwrap();
        assert!(machine_busy_secs().unwrap() > 0.0);
        assert!(!zombie);
    }

    #[test]
    fn missing_process_is_an_error_naming_the_pid() {
        let err = peak_rss_bytes(u32::MAX).unwrap_err().to_string();
        assert!(err.contains(&u32::MAX.to_string()), "{err}");
    }

    #[test]
    fn dir_bytes_sums_nested_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/x"), [0u8; 10]).unwrap();
        std::fs::write(d.path().join("y"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(d.path()), 15);
        assert_eq!(dir_bytes(&d.path().join("nope")), 0);
    }
}
