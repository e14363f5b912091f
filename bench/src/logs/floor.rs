//! The size floor: the raw corpus (the log file's bytes) through one zstd level-3 stream, as
//! `zstd -3 corpus.log` would compress it, on a thread of its own so its CPU is its own.
//! The output is only counted, never stored.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Serialize;

use super::corpus::Chunk;
use crate::error::{BenchError, Result};
use crate::procstat;

/// zstd level of the floor (`zstd -3`, the CLI's default).
pub const LEVEL: i32 = 3;

#[derive(Clone, Debug, Serialize)]
pub struct FloorResult {
    pub level: i32,
    /// libzstd version the `zstd` crate was built with.
    pub libzstd: String,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// compressed / raw.
    pub ratio: f64,
    pub cpu_secs: f64,
    /// Raw MB (10^6 bytes) compressed per CPU-second.
    pub mb_per_cpu_sec: f64,
}

/// Writes nowhere, counts bytes.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One zstd stream; CPU is that of the thread it is created and used on.
struct Stream {
    enc: zstd::stream::write::Encoder<'static, Counter>,
    raw: u64,
    cpu0: f64,
}

fn io_err(e: std::io::Error) -> BenchError {
    BenchError::io("zstd stream", e)
}

impl Stream {
    fn new() -> Result<Self> {
        let cpu0 = procstat::thread_cpu_secs()?;
        let mut enc = zstd::stream::write::Encoder::new(Counter(0), LEVEL).map_err(io_err)?;
        // as the CLI: a checksum per frame
        enc.include_checksum(true).map_err(io_err)?;
        Ok(Stream { enc, raw: 0, cpu0 })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.raw += bytes.len() as u64;
        self.enc.write_all(bytes).map_err(io_err)
    }

    fn finish(self) -> Result<FloorResult> {
        let out = self.enc.finish().map_err(io_err)?;
        let cpu = procstat::thread_cpu_secs()? - self.cpu0;
        let v = zstd::zstd_safe::version_number();
        Ok(FloorResult {
            level: LEVEL,
            libzstd: format!("{}.{}.{}", v / 10_000, v / 100 % 100, v % 100),
            raw_bytes: self.raw,
            compressed_bytes: out.0,
            ratio: out.0 as f64 / self.raw.max(1) as f64,
            cpu_secs: cpu,
            // /proc counts in 10 ms ticks; the floor only guards a division by zero
            mb_per_cpu_sec: self.raw as f64 / 1e6 / cpu.max(0.01),
        })
    }
}

/// Compresses `parts` in order into one stream, on this thread.
#[cfg(test)]
pub fn compress<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Result<FloorResult> {
    let mut s = Stream::new()?;
    for p in parts {
        s.write(p)?;
    }
    s.finish()
}

/// The floor on its own thread, fed chunk by chunk while the corpus is generated.
pub struct FloorThread {
    tx: Option<SyncSender<Arc<Chunk>>>,
    handle: Option<JoinHandle<Result<FloorResult>>>,
}

impl FloorThread {
    pub fn start() -> Result<Self> {
        let (tx, rx) = sync_channel::<Arc<Chunk>>(2);
        let handle = std::thread::Builder::new()
            .name("zstd-floor".into())
            .spawn(move || {
                let mut s = Stream::new()?;
                for c in rx {
                    s.write(c.text.as_bytes())?;
                }
                s.finish()
            })
            .map_err(|e| BenchError::io("spawning the zstd thread", e))?;
        Ok(FloorThread {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    pub fn feed(&self, chunk: Arc<Chunk>) -> Result<()> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(chunk).ok())
            .ok_or_else(|| BenchError::Decode("the zstd floor thread stopped early".into()))
    }

    pub fn finish(mut self) -> Result<FloorResult> {
        drop(self.tx.take());
        self.handle
            .take()
            .ok_or_else(|| BenchError::Decode("zstd floor finished twice".into()))?
            .join()
            .map_err(|_| BenchError::Decode("the zstd floor thread panicked".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_zstd_writes() {
        let text = "2025-11-21 10:15:02.123 INFO [catalog] cache hit for product SKU-100042\n"
            .repeat(2_000);
        let r = compress([text.as_bytes()]).unwrap();
        assert_eq!(r.raw_bytes, text.len() as u64);
        let direct = zstd::bulk::compress(text.as_bytes(), LEVEL).unwrap();
        // a stream with a checksum is a few bytes longer than one bulk frame
        assert!(
            r.compressed_bytes >= direct.len() as u64 - 8,
            "{} vs {}",
            r.compressed_bytes,
            direct.len()
        );
        assert!(r.compressed_bytes <= direct.len() as u64 + 64);
        assert!(r.ratio < 0.05);
        assert!(r.libzstd.starts_with("1."));
    }

    #[test]
    fn the_thread_sees_every_chunk() {
        let f = FloorThread::start().unwrap();
        let mut total = 0;
        for i in 0..3 {
            let c = Chunk {
                text: format!("line {i} of the corpus\n").repeat(1000),
                lines: Vec::new(),
            };
            total += c.raw_bytes();
            f.feed(Arc::new(c)).unwrap();
        }
        let r = f.finish().unwrap();
        assert_eq!(r.raw_bytes, total);
        assert!(r.compressed_bytes > 0 && r.compressed_bytes < total / 10);
    }
}
