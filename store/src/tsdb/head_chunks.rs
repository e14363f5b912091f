//! Closed head chunks on disk (`<dir>/chunks_head/`), so the head keeps only each series'
//! open chunk in memory plus a small locator per closed chunk (as Prometheus's
//! `chunks_head/`).
//!
//! One append-only file per head generation; a generation ends at each freeze, and its file
//! is deleted once the frozen chunks are in a block. Writes are buffered and never fsynced:
//! the WAL is the durability source, replay rebuilds the head and rewrites the files, so
//! the files left by a previous run are deleted at open. Reads are positional
//! (`read_at`); a chunk still in the write buffer is read from the buffer.
//!
//! A file whose buffered write fails is marked failed: its buffered chunks stay readable
//! from memory and every later chunk of the generation stays in memory (counted in
//! `lookout_tsdb_head_chunk_write_failures_total`); the next generation tries a new file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::metrics;
use crate::error::{Result, StoreError};

/// Buffered bytes are written to the file once the buffer reaches this size.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// One generation's file.
pub struct ChunkFile {
    path: PathBuf,
    file: File,
    state: Mutex<WriteState>,
}

#[derive(Default)]
struct WriteState {
    /// Bytes written to the file; the buffer holds the bytes from this offset on.
    written: u64,
    buf: Vec<u8>,
    /// A write failed: no more appends, buffered bytes stay in memory.
    failed: bool,
}

impl ChunkFile {
    fn create(dir: &Path, generation: u32) -> Result<ChunkFile> {
        let path = dir.join(format!("{generation:08}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(ChunkFile::from_file(path, file))
    }

    fn from_file(path: PathBuf, file: File) -> ChunkFile {
        ChunkFile {
            path,
            file,
            state: Mutex::new(WriteState {
                buf: Vec::with_capacity(WRITE_BUFFER_BYTES),
                ..WriteState::default()
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `data`, returning its offset; `None` if this file failed a write (the caller
    /// keeps the chunk in memory).
    fn append(&self, data: &[u8]) -> Option<u64> {
        let mut st = self.state.lock();
        if st.failed {
            return None;
        }
        let offset = st.written + st.buf.len() as u64;
        st.buf.extend_from_slice(data);
        metrics::HEAD_CHUNKS_BYTES.add(data.len() as i64);
        if st.buf.len() >= WRITE_BUFFER_BYTES {
            self.write_buffer(&mut st);
        }
        Some(offset)
    }

    /// Writes the buffer out; on failure keeps it in memory and marks the file failed.
    fn write_buffer(&self, st: &mut WriteState) {
        if st.buf.is_empty() || st.failed {
            return;
        }
        match self.file.write_all_at(&st.buf, st.written) {
            Ok(()) => {
                st.written += st.buf.len() as u64;
                st.buf.clear();
            }
            Err(e) => {
                st.failed = true;
                metrics::HEAD_CHUNK_WRITE_FAILURES.inc();
                tracing::error!(path = %self.path.display(), error = %e,
                    "writing head chunks failed; later chunks of this generation stay in memory");
            }
        }
    }

    /// Reads `len` bytes at `offset`, from the buffer if they have not been written yet.
    pub fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>> {
        let len = len as usize;
        let end = offset.saturating_add(len as u64);
        {
            let st = self.state.lock();
            if end > st.written {
                let start = offset.checked_sub(st.written).and_then(|s| {
                    let s = usize::try_from(s).ok()?;
                    st.buf.get(s..s.checked_add(len)?)
                });
                return match start {
                    Some(bytes) => Ok(bytes.to_vec()),
                    // a chunk is appended whole and the buffer written whole, so a chunk
                    // never straddles the two
                    None => Err(StoreError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("head chunk at {offset}+{len} is not in the file"),
                    }),
                };
            }
        }
        let mut out = vec![0u8; len];
        self.file
            .read_exact_at(&mut out, offset)
            .map_err(|e| StoreError::io(&self.path, e))?;
        Ok(out)
    }

    /// Bytes appended (written and buffered).
    fn size(&self) -> u64 {
        let st = self.state.lock();
        st.written + st.buf.len() as u64
    }

    #[cfg(test)]
    pub fn write_out(&self) {
        let mut st = self.state.lock();
        self.write_buffer(&mut st);
    }
}

/// Where a closed chunk's bytes are.
#[derive(Clone, Debug)]
pub enum ChunkData {
    /// Kept in memory: no chunk files (a head without a directory) or the write failed.
    Mem(Box<[u8]>),
    /// In generation `file` at `offset`.
    File { file: u32, len: u32, offset: u64 },
}

/// The chunk files of one head.
pub struct HeadChunks {
    dir: PathBuf,
    /// Every generation whose file still exists, the current one last.
    files: BTreeMap<u32, Arc<ChunkFile>>,
    current: u32,
}

impl HeadChunks {
    /// Creates `dir` if needed, deletes every file in it (left by an earlier run; replay
    /// rewrites what is still needed) and starts generation 1.
    pub fn open(dir: &Path) -> Result<HeadChunks> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut removed = 0usize;
        for entry in entries {
            let path = entry.map_err(|e| StoreError::io(dir, e))?.path();
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::debug!(dir = %dir.display(), files = removed, "removed stale head chunk files");
        }
        let first = Arc::new(ChunkFile::create(dir, 1)?);
        Ok(HeadChunks {
            dir: dir.to_path_buf(),
            files: BTreeMap::from([(1, first)]),
            current: 1,
        })
    }

    /// Stores a closed chunk: in the current file, or in memory if that file failed.
    pub fn store(&self, data: Box<[u8]>) -> ChunkData {
        let Ok(len) = u32::try_from(data.len()) else {
            return ChunkData::Mem(data);
        };
        match self.files.get(&self.current).and_then(|f| f.append(&data)) {
            Some(offset) => ChunkData::File {
                file: self.current,
                len,
                offset,
            },
            None => ChunkData::Mem(data),
        }
    }

    pub fn file(&self, generation: u32) -> Option<&Arc<ChunkFile>> {
        self.files.get(&generation)
    }

    /// Starts a new generation (at freeze). On failure the current file stays in use.
    pub fn rotate(&mut self) {
        if let Some(f) = self.files.get(&self.current) {
            let mut st = f.state.lock();
            f.write_buffer(&mut st);
            if st.buf.is_empty() {
                // the generation is complete; its chunks are read back by the block writer
                st.buf = Vec::new();
            }
        }
        let next = self.current.wrapping_add(1).max(1);
        match ChunkFile::create(&self.dir, next) {
            Ok(f) => {
                self.files.insert(next, Arc::new(f));
                self.current = next;
            }
            Err(e) => {
                metrics::HEAD_CHUNK_WRITE_FAILURES.inc();
                tracing::error!(error = %e, "starting a head chunk file failed; keeping the current one");
            }
        }
    }

    /// Deletes the files of every generation before the current one (their chunks are in a
    /// block). Readers holding a file keep reading it through the open handle.
    pub fn release_old(&mut self) {
        let old: Vec<u32> = self.files.range(..self.current).map(|(g, _)| *g).collect();
        for g in old {
            if let Some(f) = self.files.remove(&g) {
                metrics::HEAD_CHUNKS_BYTES.sub(f.size() as i64);
                if let Err(e) = std::fs::remove_file(&f.path) {
                    tracing::warn!(path = %f.path.display(), error = %e, "removing head chunk file failed");
                }
            }
        }
    }

    /// Bytes in the live files.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size()).sum()
    }

    pub fn generation(&self) -> u32 {
        self.current
    }

    #[cfg(test)]
    pub fn current_file(&self) -> Option<&Arc<ChunkFile>> {
        self.files.get(&self.current)
    }

    /// A head whose current file refuses writes, for testing the in-memory fallback.
    #[cfg(test)]
    pub fn failing(dir: &Path) -> Result<HeadChunks> {
        let mut hc = HeadChunks::open(dir)?;
        let path = dir.join("readonly");
        std::fs::write(&path, b"").map_err(|e| StoreError::io(&path, e))?;
        let file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        hc.files
            .insert(hc.current, Arc::new(ChunkFile::from_file(path, file)));
        Ok(hc)
    }
}

impl Drop for HeadChunks {
    fn drop(&mut self) {
        for f in self.files.values() {
            metrics::HEAD_CHUNKS_BYTES.sub(f.size() as i64);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chunks_read_back_from_buffer_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let hc = HeadChunks::open(dir.path()).unwrap();
        let a = hc.store(vec![1, 2, 3].into());
        let ChunkData::File { file, len, offset } = a else {
            panic!("expected a file chunk")
        };
        let f = hc.file(file).unwrap();
        assert_eq!(
            f.read(offset, len).unwrap(),
            vec![1, 2, 3],
            "from the buffer"
        );
        f.write_out();
        let b = hc.store(vec![4, 5].into());
        assert_eq!(f.read(offset, len).unwrap(), vec![1, 2, 3], "from the file");
        let ChunkData::File { len, offset, .. } = b else {
            panic!("expected a file chunk")
        };
        assert_eq!(offset, 3);
        assert_eq!(f.read(offset, len).unwrap(), vec![4, 5]);
        assert!(f.read(offset, 10).is_err());
    }

    #[test]
    fn stale_files_are_removed_and_old_generations_released() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000007"), b"stale").unwrap();
        let mut hc = HeadChunks::open(dir.path()).unwrap();
        assert!(!dir.path().join("00000007").exists());
        hc.store(vec![9; 10].into());
        let old = hc.current_file().unwrap().clone();
        hc.rotate();
        assert_eq!(hc.generation(), 2);
        assert!(old.path().exists());
        hc.release_old();
        assert!(!old.path().exists());
        // a reader holding the old file still reads it
        assert_eq!(old.read(0, 10).unwrap(), vec![9; 10]);
        assert_eq!(hc.bytes(), 0);
    }

    #[test]
    fn write_failure_keeps_chunks_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let hc = HeadChunks::failing(dir.path()).unwrap();
        let big = vec![7u8; WRITE_BUFFER_BYTES];
        // buffered, then the write fails: the bytes stay readable from the buffer
        let ChunkData::File { file, len, offset } = hc.store(big.clone().into()) else {
            panic!("expected a file chunk")
        };
        assert_eq!(hc.file(file).unwrap().read(offset, len).unwrap(), big);
        assert!(matches!(hc.store(vec![1].into()), ChunkData::Mem(_)));
    }
}
