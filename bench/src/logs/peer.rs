//! The throughput reference: a plain tantivy indexer of the same corpus, in-process. One
//! document per line: `body` (tantivy's default tokenizer, positions, stored), `service` and
//! `level` (raw strings, fast), `time` (u64, indexed and fast). Index settings are tantivy's
//! defaults as this workspace builds it (doc store compressed with zstd: the workspace enables
//! tantivy's `zstd-compression` and not `lz4-compression`, so zstd is the default compressor);
//! the writer uses every core (`Index::writer`) and commits after every chunk.
//!
//! CPU: the caller measures the whole process over the pass and subtracts the generator's and
//! the zstd floor's thread time; what is left is this indexer (document building on the
//! caller's thread, tokenising and segment writing on tantivy's threads, commits, merges).
//!
//! When done, the index is opened and its answers are checked: the document count equals
//! the lines, and term counts of common words equal the generator's tally.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tantivy::collector::Count;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Schema, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::{Index, IndexWriter, TantivyDocument, Term};

use super::corpus::{severity_text, Chunk, SERVICES};
use crate::error::{BenchError, Result};
use crate::procstat;

#[derive(Clone, Debug, Serialize)]
pub struct PeerResult {
    pub docs: u64,
    pub raw_bytes: u64,
    pub index_bytes: u64,
    /// Index bytes by file extension (as for Lookout's partitions).
    pub by_extension: std::collections::BTreeMap<String, u64>,
    /// index bytes / raw bytes.
    pub ratio: f64,
    pub commits: u64,
    pub segments: usize,
    pub writer_threads: usize,
    pub memory_budget_bytes: usize,
    /// Filled in by the caller (see the module docs).
    pub cpu_secs: f64,
    pub mb_per_cpu_sec: f64,
    pub wall_secs: f64,
    /// Term counts checked against the tally: `(word, hits)`.
    pub checked_terms: Vec<(String, u64)>,
}

fn err(what: &str, e: tantivy::TantivyError) -> BenchError {
    BenchError::Server {
        server: "tantivy peer".into(),
        reason: format!("{what}: {e}"),
    }
}

pub struct Peer {
    index: Index,
    writer: IndexWriter,
    body: tantivy::schema::Field,
    service: tantivy::schema::Field,
    level: tantivy::schema::Field,
    time: tantivy::schema::Field,
    dir: PathBuf,
    docs: u64,
    raw_bytes: u64,
    commits: u64,
    threads: usize,
    budget: usize,
    started: std::time::Instant,
}

impl Peer {
    /// A fresh index in `dir` (emptied first).
    pub fn create(dir: &Path, memory_budget: usize) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let mut b = Schema::builder();
        let body = b.add_text_field("body", TEXT | STORED);
        let service = b.add_text_field("service", STRING | FAST);
        let level = b.add_text_field("level", STRING | FAST);
        let time = b.add_u64_field("time", INDEXED | FAST);
        let index =
            Index::create_in_dir(dir, b.build()).map_err(|e| err("creating the index", e))?;
        let writer = index
            .writer(memory_budget)
            .map_err(|e| err("creating the writer", e))?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        Ok(Peer {
            index,
            writer,
            body,
            service,
            level,
            time,
            dir: dir.to_path_buf(),
            docs: 0,
            raw_bytes: 0,
            commits: 0,
            threads,
            budget: memory_budget,
            started: std::time::Instant::now(),
        })
    }

    /// Indexes every line of `chunk`, then commits.
    pub fn add_chunk(&mut self, chunk: &Chunk) -> Result<()> {
        for m in &chunk.lines {
            let mut doc = TantivyDocument::new();
            doc.add_text(self.body, chunk.line(m));
            doc.add_text(self.service, SERVICES[m.service as usize]);
            doc.add_text(self.level, severity_text(m.severity));
            doc.add_u64(self.time, m.time_unix_nano);
            self.writer
                .add_document(doc)
                .map_err(|e| err("adding a document", e))?;
        }
        self.docs += chunk.lines.len() as u64;
        self.raw_bytes += chunk.raw_bytes();
        self.writer.commit().map_err(|e| err("committing", e))?;
        self.commits += 1;
        Ok(())
    }

    /// Waits for merges to finish and checks the index answers: `expect` are words whose
    /// line counts the corpus tally knows.
    pub fn finish(self, expect: &[(String, u64)]) -> Result<PeerResult> {
        self.writer
            .wait_merging_threads()
            .map_err(|e| err("waiting for merges", e))?;
        let wall = self.started.elapsed().as_secs_f64();
        let reader = self
            .index
            .reader()
            .map_err(|e| err("opening a reader", e))?;
        let searcher = reader.searcher();
        if searcher.num_docs() != self.docs {
            return Err(BenchError::Server {
                server: "tantivy peer".into(),
                reason: format!(
                    "{} documents indexed, {} lines sent",
                    searcher.num_docs(),
                    self.docs
                ),
            });
        }
        let mut checked = Vec::new();
        for (word, want) in expect {
            let q = TermQuery::new(
                Term::from_field_text(self.body, word),
                IndexRecordOption::Basic,
            );
            let n = searcher
                .search(&q, &Count)
                .map_err(|e| err("counting", e))? as u64;
            if n != *want {
                return Err(BenchError::Server {
                    server: "tantivy peer".into(),
                    reason: format!("term {word:?}: {n} documents, the corpus has {want} lines"),
                });
            }
            checked.push((word.clone(), n));
        }
        let index_bytes = procstat::dir_bytes(&self.dir);
        let mut by_extension = std::collections::BTreeMap::new();
        super::report::sizes_by_extension(&self.dir, &mut by_extension);
        Ok(PeerResult {
            docs: self.docs,
            raw_bytes: self.raw_bytes,
            index_bytes,
            by_extension,
            ratio: index_bytes as f64 / self.raw_bytes.max(1) as f64,
            commits: self.commits,
            segments: searcher.segment_readers().len(),
            writer_threads: self.threads,
            memory_budget_bytes: self.budget,
            cpu_secs: 0.0,
            mb_per_cpu_sec: 0.0,
            wall_secs: wall,
            checked_terms: checked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::corpus::Generator;
    use super::*;

    #[test]
    fn indexes_every_line_and_counts_terms() {
        let d = tempfile::tempdir().unwrap();
        let mut g = Generator::new(3, 1_763_700_000_000_000_000, 1_000_000, true);
        let mut p = Peer::create(&d.path().join("idx"), 50_000_000).unwrap();
        let a = g.chunk(2_000_000);
        p.add_chunk(&a).unwrap();
        let b = g.finish();
        p.add_chunk(&b).unwrap();
        let t = g.tally.as_ref().unwrap();
        // words the default tokenizer splits as Lookout's does (no `_`, no long tokens)
        let expect: Vec<(String, u64)> = ["get", "info", "healthz", "mozilla"]
            .iter()
            .map(|w| {
                let i = super::super::corpus::COMMON_WORDS
                    .iter()
                    .position(|x| x == w)
                    .unwrap();
                (w.to_string(), t.common_word_lines(i))
            })
            .collect();
        assert!(expect.iter().all(|(_, n)| *n > 0));
        let r = p.finish(&expect).unwrap();
        assert_eq!(r.docs, (a.lines.len() + b.lines.len()) as u64);
        assert_eq!(r.raw_bytes, a.raw_bytes() + b.raw_bytes());
        assert!(r.index_bytes > 0);
        assert_eq!(r.commits, 2);
        assert_eq!(r.checked_terms.len(), 4);
        // a wrong expectation is an error, not a silent pass
        let d2 = tempfile::tempdir().unwrap();
        let mut p = Peer::create(d2.path(), 50_000_000).unwrap();
        p.add_chunk(&a).unwrap();
        let e = p
            .finish(&[("timeout".into(), u64::MAX)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout"), "{e}");
    }
}
