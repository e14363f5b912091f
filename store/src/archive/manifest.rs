//! The archive manifest (`manifest.json` at the archive's root): the list of files that make
//! up the archive. A file the manifest does not name is not part of the archive (a move
//! that crashed before its manifest step), whatever the store holds.

use serde::{Deserialize, Serialize};

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub files: Vec<FileEntry>,
}

/// One archived file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// `metrics`, `logs` or `traces`.
    pub signal: String,
    /// Path relative to the archive root, e.g. `metrics/date=2026-11-21/hour=13/part-<source>.parquet`.
    pub path: String,
    /// The local block or partition the file was made from.
    pub source: String,
    /// Oldest and newest record time in the file, Unix milliseconds, inclusive.
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub bytes: u64,
    /// Distinct series (metrics) in the file; 0 for other signals.
    #[serde(default)]
    pub series: u64,
}

impl Manifest {
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("archive manifest: {e}"))?;
        if m.version != MANIFEST_VERSION {
            return Err(format!(
                "archive manifest version {} is not one this build reads ({MANIFEST_VERSION})",
                m.version
            ));
        }
        Ok(m)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut m = self.clone();
        m.version = MANIFEST_VERSION;
        // a Vec of plain fields cannot fail to serialize
        serde_json::to_vec_pretty(&m).unwrap_or_default()
    }

    /// Adds files, replacing any entry with the same path (a retried move).
    pub fn add(&mut self, files: Vec<FileEntry>) {
        self.files
            .retain(|f| !files.iter().any(|n| n.path == f.path));
        self.files.extend(files);
        self.files
            .sort_by(|a, b| (a.min_time, &a.path).cmp(&(b.min_time, &b.path)));
    }

    /// Removes the files with these paths.
    pub fn remove(&mut self, paths: &[String]) {
        self.files.retain(|f| !paths.contains(&f.path));
    }

    pub fn overlapping(&self, signal: &str, mint: i64, maxt: i64) -> Vec<FileEntry> {
        self.files
            .iter()
            .filter(|f| f.signal == signal && f.max_time >= mint && f.min_time <= maxt)
            .cloned()
            .collect()
    }

    pub fn has_source(&self, signal: &str, source: &str) -> bool {
        self.files
            .iter()
            .any(|f| f.signal == signal && f.source == source)
    }

    pub fn sources(&self, signal: &str) -> Vec<String> {
        let mut s: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.signal == signal)
            .map(|f| f.source.clone())
            .collect();
        s.sort();
        s.dedup();
        s
    }

    /// Files, bytes and rows of one signal.
    pub fn totals(&self, signal: &str) -> (u64, u64, u64) {
        self.files
            .iter()
            .filter(|f| f.signal == signal)
            .fold((0, 0, 0), |(n, b, r), f| (n + 1, b + f.bytes, r + f.rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, min: i64, max: i64) -> FileEntry {
        FileEntry {
            signal: "metrics".into(),
            path: path.into(),
            source: "b1".into(),
            min_time: min,
            max_time: max,
            rows: 10,
            bytes: 100,
            series: 1,
        }
    }

    #[test]
    fn add_replaces_same_path_and_round_trips() {
        let mut m = Manifest::default();
        m.add(vec![entry("metrics/a", 0, 10), entry("metrics/b", 11, 20)]);
        m.add(vec![entry("metrics/a", 0, 9)]);
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.files[0].max_time, 9);
        let back = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(back.files, m.files);
        assert_eq!(back.overlapping("metrics", 9, 9).len(), 1);
        assert_eq!(back.overlapping("metrics", 10, 10).len(), 0);
        assert_eq!(back.overlapping("logs", 0, 100).len(), 0);
        assert_eq!(back.totals("metrics"), (2, 200, 20));
        assert!(back.has_source("metrics", "b1"));
        let mut gone = back.clone();
        gone.remove(&["metrics/a".to_string()]);
        assert_eq!(gone.files.len(), 1);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let err = Manifest::decode(br#"{"version": 7, "files": []}"#).unwrap_err();
        assert!(err.contains("version 7"), "{err}");
        assert!(Manifest::decode(b"not json").is_err());
    }
}
