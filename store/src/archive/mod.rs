//! The cold tier: Apache Parquet files on a local directory or an S3-compatible bucket.
//!
//! Map:
//! * this file: [`Archive`], one object store (the `object_store` crate: local directory or
//!   S3) under a prefix, the manifest that says which files make up the archive, and a small
//!   cache of file bytes for queries. All object store I/O runs on the archive's own
//!   single-threaded runtime (thread `archive-io`), so the synchronous query path can wait
//!   for a read without being inside a runtime and the HTTP client never changes runtimes.
//! * [`manifest`]: the manifest's JSON shape and its edits.
//! * [`metrics`]: the Parquet schemas of archived samples and rollups, writer and reader.
//! * [`rollup`]: downsampling (5 m and 1 h windows) and the series queries read from it.
//! * [`failpoint`]: `LOOKOUT_FAILPOINT=<step>` aborts the process at a named step of a move,
//!   for the crash tests.
//!
//! A move to the archive (driven by the store that owns the data, see
//! `tsdb::MetricsStore::archive_old_blocks`) is: write each file, read it back and compare,
//! then add the files to the manifest (one atomic put), then delete the local copy. Readers
//! only read files the manifest names, so a crash before the manifest put leaves an unnamed
//! file that the retry overwrites (file names are derived from the source, not the time of
//! the move), and a crash after it leaves a local copy that the next start or pass deletes.
//! Queries that see both copies for a moment merge them by timestamp without duplicates.
//!
//! The format is documented in `docs/format/archive.md`.

pub mod failpoint;
pub mod logs;
pub mod manifest;
pub mod metrics;
mod parquet_io;
pub mod rollup;
pub(crate) mod telemetry;
pub mod traces;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use parking_lot::{Mutex, RwLock};

use crate::error::{Result, StoreError};
pub use manifest::{FileEntry, Manifest};

/// Where the archive lives. `Debug` and `Display` name the place, never the credentials.
#[derive(Clone, PartialEq)]
pub enum ArchiveLocation {
    /// A local directory (created if missing).
    Local(PathBuf),
    /// An S3-compatible bucket. Credentials not given here come from the usual AWS
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...).
    S3 {
        endpoint: Option<String>,
        bucket: String,
        prefix: String,
        region: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
    },
}

impl std::fmt::Debug for ArchiveLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveLocation({self})")
    }
}

impl std::fmt::Display for ArchiveLocation {
    /// Names the place without credentials, for logs and errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveLocation::Local(dir) => write!(f, "{}", dir.display()),
            ArchiveLocation::S3 {
                endpoint,
                bucket,
                prefix,
                ..
            } => {
                write!(f, "s3://{bucket}/{prefix}")?;
                if let Some(e) = endpoint {
                    write!(f, " at {e}")?;
                }
                Ok(())
            }
        }
    }
}

const MANIFEST_NAME: &str = "manifest.json";
/// How long a start waits for the manifest before going on without the archive (the mover
/// keeps trying).
const OPEN_WAIT: Duration = Duration::from_secs(5);
/// File bytes kept for queries, so a dashboard refreshing over archived hours does not fetch
/// the same objects again and again.
const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// The archive: an object store, its manifest and a read cache. Cheap to share.
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    location: String,
    io: tokio::runtime::Handle,
    /// `None` until the manifest has been read: nothing is archived or deleted before
    /// that, so a manifest that could not be read is never overwritten by an empty one.
    manifest: RwLock<Option<Manifest>>,
    /// Serializes manifest edits (read-modify-put).
    manifest_edit: tokio::sync::Mutex<()>,
    cache: Mutex<FileCache>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Archive {
    /// Opens the archive and tries once to read its manifest (see [`Archive::ensure_manifest`]
    /// for later tries). Errors only for a configuration that cannot work (a local directory
    /// that cannot be created, an S3 setting the client refuses).
    pub fn open(location: &ArchiveLocation) -> Result<Arc<Archive>> {
        let (store, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match location {
            ArchiveLocation::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
                // fsync: a file (or manifest) must be on disk before the local copy goes
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| {
                        StoreError::BadRequest(format!("archive directory {}: {e}", dir.display()))
                    })?
                    .with_fsync(true);
                (Arc::new(fs), ObjectPath::default())
            }
            ArchiveLocation::S3 {
                endpoint,
                bucket,
                prefix,
                region,
                access_key_id,
                secret_access_key,
            } => {
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    // a short retry per request: the mover retries whole moves with its
                    // own backoff, and a start must not wait minutes for a bucket that
                    // is down
                    .with_retry(RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(15),
                        ..RetryConfig::default()
                    });
                if let Some(e) = endpoint {
                    // MinIO, Ceph, moto and most other S3 servers want path-style addresses
                    b = b
                        .with_endpoint(e)
                        .with_allow_http(e.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                if let Some(k) = access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(s) = secret_access_key {
                    b = b.with_secret_access_key(s);
                }
                let s3 = b
                    .build()
                    .map_err(|e| StoreError::BadRequest(format!("archive bucket {bucket}: {e}")))?;
                (Arc::new(s3), ObjectPath::from(prefix.trim_matches('/')))
            }
        };
        let archive = Arc::new(Archive {
            store,
            prefix,
            location: location.to_string(),
            io: io_runtime()?,
            manifest: RwLock::new(None),
            manifest_edit: tokio::sync::Mutex::new(()),
            cache: Mutex::new(FileCache::default()),
        });
        let first_read = archive.run_blocking({
            let a = Arc::clone(&archive);
            async move {
                tokio::time::timeout(OPEN_WAIT, a.load_manifest())
                    .await
                    .map_err(|_| {
                        StoreError::Unavailable(format!("no answer in {}s", OPEN_WAIT.as_secs()))
                    })?
            }
        });
        if let Err(e) = first_read {
            telemetry::ERRORS
                .with_label_values(&["manifest_read"])
                .inc();
            tracing::warn!(archive = %archive.location, error = %e,
                "archive manifest not readable yet; archiving waits and queries skip the archive until it is");
        }
        Ok(archive)
    }

    /// Where the archive is, without credentials.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn object_path(&self, relative: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in relative.split('/') {
            p = p.join(part);
        }
        p
    }

    /// Runs `fut` on the archive's runtime and waits for it, from any thread (a query
    /// worker, a blocking pool thread or a runtime worker: it only blocks this thread).
    fn run_blocking<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.io.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| StoreError::Unavailable("archive i/o runtime stopped".to_string()))?
    }

    /// Runs `fut` on the archive's runtime, for async callers.
    async fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.io
            .spawn(fut)
            .await
            .map_err(|e| StoreError::Unavailable(format!("archive i/o task failed: {e}")))?
    }

    async fn load_manifest(&self) -> Result<()> {
        let store = Arc::clone(&self.store);
        let path = self.object_path(MANIFEST_NAME);
        let location = self.location.clone();
        let loaded = self
            .run(async move {
                match fetch(&*store, &path).await {
                    Ok(bytes) => Manifest::decode(&bytes).map_err(|reason| StoreError::Corrupt {
                        path: PathBuf::from(format!("{location}/{path}")),
                        reason,
                    }),
                    Err(object_store::Error::NotFound { .. }) => Ok(Manifest::default()),
                    Err(e) => Err(object_err(&location, &path, e)),
                }
            })
            .await?;
        telemetry::set_manifest_gauges(&loaded);
        tracing::info!(archive = %self.location, files = loaded.files.len(), "archive manifest read");
        *self.manifest.write() = Some(loaded);
        Ok(())
    }

    /// Reads the manifest if it has not been read yet; true once it has.
    pub async fn ensure_manifest(&self) -> bool {
        if self.manifest.read().is_some() {
            return true;
        }
        let _edit = self.manifest_edit.lock().await;
        if self.manifest.read().is_some() {
            return true;
        }
        match self.load_manifest().await {
            Ok(()) => true,
            Err(e) => {
                telemetry::ERRORS
                    .with_label_values(&["manifest_read"])
                    .inc();
                tracing::warn!(archive = %self.location, error = %e, "reading the archive manifest failed");
                false
            }
        }
    }

    /// Whether the manifest has been read (archive contents are known).
    pub fn ready(&self) -> bool {
        self.manifest.read().is_some()
    }

    /// Files of `signal` whose time range overlaps `[mint, maxt]`, oldest first.
    pub fn files(&self, signal: &str, mint: i64, maxt: i64) -> Vec<FileEntry> {
        match &*self.manifest.read() {
            Some(m) => m.overlapping(signal, mint, maxt),
            None => Vec::new(),
        }
    }

    /// Whether the manifest already holds the files made from `source` (a local block or
    /// partition), i.e. whether its move got past the manifest step.
    pub fn has_source(&self, signal: &str, source: &str) -> bool {
        self.manifest
            .read()
            .as_ref()
            .is_some_and(|m| m.has_source(signal, source))
    }

    /// Every source of `signal` the manifest names.
    pub fn sources(&self, signal: &str) -> Vec<String> {
        self.manifest
            .read()
            .as_ref()
            .map(|m| m.sources(signal))
            .unwrap_or_default()
    }

    /// Totals per signal: files, bytes, rows.
    pub fn totals(&self, signal: &str) -> (u64, u64, u64) {
        self.manifest
            .read()
            .as_ref()
            .map(|m| m.totals(signal))
            .unwrap_or_default()
    }

    /// Writes one file and reads it back; succeeds only if the stored bytes are the ones
    /// written. Writing the same path again replaces the file (a retried move).
    pub async fn put_verified(&self, relative: &str, bytes: Bytes) -> Result<()> {
        let store = Arc::clone(&self.store);
        let path = self.object_path(relative);
        let location = self.location.clone();
        let result = self
            .run(async move {
                store
                    .put(&path, PutPayload::from(bytes.clone()))
                    .await
                    .map_err(|e| object_err(&location, &path, e))?;
                let back = fetch(&*store, &path)
                    .await
                    .map_err(|e| object_err(&location, &path, e))?;
                if back != bytes {
                    return Err(StoreError::Unavailable(format!(
                        "archive {location}: {path} reads back {} bytes that differ from the {} written",
                        back.len(),
                        bytes.len()
                    )));
                }
                Ok(bytes.len())
            })
            .await;
        match result {
            Ok(n) => {
                telemetry::WRITES.with_label_values(&["ok"]).inc();
                telemetry::WRITTEN_BYTES.inc_by(n as u64);
                Ok(())
            }
            Err(e) => {
                telemetry::WRITES.with_label_values(&["error"]).inc();
                Err(e)
            }
        }
    }

    /// Applies `edit` to the manifest and stores it (one put, atomic for readers of the
    /// store). The in-memory manifest changes only once the put succeeded.
    pub async fn edit_manifest(&self, edit: impl FnOnce(&mut Manifest)) -> Result<()> {
        let _edit = self.manifest_edit.lock().await;
        let mut next = match &*self.manifest.read() {
            Some(m) => m.clone(),
            None => {
                return Err(StoreError::Unavailable(format!(
                    "archive {}: manifest not read yet",
                    self.location
                )))
            }
        };
        edit(&mut next);
        let encoded = Bytes::from(next.encode());
        let store = Arc::clone(&self.store);
        let path = self.object_path(MANIFEST_NAME);
        let location = self.location.clone();
        let put = self
            .run(async move {
                store
                    .put(&path, PutPayload::from(encoded))
                    .await
                    .map(|_| ())
                    .map_err(|e| object_err(&location, &path, e))
            })
            .await;
        if let Err(e) = put {
            telemetry::ERRORS
                .with_label_values(&["manifest_write"])
                .inc();
            return Err(e);
        }
        telemetry::set_manifest_gauges(&next);
        *self.manifest.write() = Some(next);
        Ok(())
    }

    /// Deletes files (after the manifest stopped naming them). A file already gone is fine.
    pub async fn delete(&self, relatives: Vec<String>) -> Result<()> {
        for relative in relatives {
            self.cache.lock().remove(&relative);
            let store = Arc::clone(&self.store);
            let path = self.object_path(&relative);
            let location = self.location.clone();
            self.run(async move {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(object_err(&location, &path, e)),
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Every object under `dir/` (relative paths), for the sweep of files a crashed move
    /// left unnamed.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let store = Arc::clone(&self.store);
        let base = self.object_path(dir);
        let prefix_parts = self.prefix.parts().count();
        let location = self.location.clone();
        self.run(async move {
            let metas: Vec<object_store::ObjectMeta> = store
                .list(Some(&base))
                .try_collect()
                .await
                .map_err(|e| object_err(&location, &base, e))?;
            Ok(metas
                .into_iter()
                .map(|m| {
                    m.location
                        .parts()
                        .skip(prefix_parts)
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect())
        })
        .await
    }

    /// A file's bytes, from the cache or the store. Blocking: for the query path.
    pub fn read_blocking(&self, relative: &str) -> Result<Bytes> {
        if let Some(b) = self.cache.lock().get(relative) {
            return Ok(b);
        }
        let store = Arc::clone(&self.store);
        let path = self.object_path(relative);
        let location = self.location.clone();
        let bytes = self
            .run_blocking(async move {
                fetch(&*store, &path)
                    .await
                    .map_err(|e| object_err(&location, &path, e))
            })
            .inspect_err(|_| telemetry::ERRORS.with_label_values(&["read"]).inc())?;
        telemetry::READ_BYTES.inc_by(bytes.len() as u64);
        self.cache.lock().insert(relative, bytes.clone());
        Ok(bytes)
    }
}

/// When the next move may be tried after failures: doubling from 1 s up to 5 minutes.
#[derive(Debug)]
pub struct Backoff {
    next_try: Instant,
    delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next_try: Instant::now(),
            delay: Duration::ZERO,
        }
    }
}

impl Backoff {
    /// Whether a try is due.
    pub fn due(&self) -> bool {
        Instant::now() >= self.next_try
    }

    /// Records a failure; returns how long the next try waits.
    pub fn failed(&mut self) -> Duration {
        self.delay = (self.delay * 2).clamp(Duration::from_secs(1), Duration::from_secs(300));
        self.next_try = Instant::now() + self.delay;
        self.delay
    }

    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

/// Runs a blocking encoder off the async runtime.
pub async fn encode_blocking<T: Send + 'static>(
    encode: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(encode)
        .await
        .map_err(|e| StoreError::Unavailable(format!("archive encoder task failed: {e}")))?
}

/// Writes and verifies each encoded file, adding its manifest entry to `files`
/// [failpoint `archive.<signal>.after_file` after each].
pub async fn put_files(
    archive: &Archive,
    signal: &str,
    encoded: impl IntoIterator<Item = (FileEntry, Bytes)>,
    files: &mut Vec<FileEntry>,
) -> Result<()> {
    for (entry, bytes) in encoded {
        archive.put_verified(&entry.path, bytes).await?;
        failpoint::hit(&format!("archive.{signal}.after_file"));
        files.push(entry);
    }
    Ok(())
}

const NS_PER_MS: u64 = 1_000_000;

/// The manifest's millisecond range covering `[start_ns, end_ns]` (rounded outwards).
pub fn ms_range(start_ns: u64, end_ns: u64) -> (i64, i64) {
    let ms = |ns: u64| i64::try_from(ns / NS_PER_MS).unwrap_or(i64::MAX);
    (ms(start_ns), ms(end_ns.saturating_add(NS_PER_MS - 1)))
}

/// The Hive-partitioned path of a file of `signal` in the UTC hour of `unix_secs`:
/// `<signal>/date=YYYY-MM-DD/hour=HH/part-<part>.parquet`.
pub fn hour_path(signal: &str, unix_secs: i64, part: &str) -> String {
    let t = crate::timefmt::DateTime::from_unix_secs(unix_secs);
    format!(
        "{signal}/date={:04}-{:02}-{:02}/hour={:02}/part-{part}.parquet",
        t.year, t.month, t.day, t.hour
    )
}

/// Writes the one file of a local partition or segment (`source`) to the archive and names it
/// in the manifest, unless the manifest names `source` already (a move killed after that
/// step). `encode` runs off the async runtime and gives the file and its manifest entry
/// (`None` when the source holds nothing). The caller deletes the local copy afterwards.
/// Failpoints: `archive.<signal>.after_file`, `.before_manifest`, `.before_delete`.
pub async fn write_one(
    archive: &Archive,
    signal: &str,
    source: &str,
    encode: impl FnOnce() -> Result<Option<(FileEntry, Bytes)>> + Send + 'static,
) -> Result<()> {
    if !archive.has_source(signal, source) {
        let started = Instant::now();
        let encoded = encode_blocking(encode).await?;
        let mut files = Vec::new();
        put_files(archive, signal, encoded, &mut files).await?;
        failpoint::hit(&format!("archive.{signal}.before_manifest"));
        if let Some(f) = files.first() {
            tracing::info!(
                signal,
                source,
                rows = f.rows,
                bytes = f.bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "written to the archive"
            );
            archive.edit_manifest(|m| m.add(files)).await?;
        }
    }
    failpoint::hit(&format!("archive.{signal}.before_delete"));
    Ok(())
}

/// Runs one pass of a store's mover unless `backoff` says to wait: a failure is counted
/// (`lookout_archive_errors_total{op="move"}`), logged with the wait before the next try,
/// and returned; the data stays local.
pub async fn pass_with_backoff(
    backoff: &Mutex<Backoff>,
    archive: &Archive,
    signal: &str,
    pass: impl std::future::Future<Output = Result<usize>>,
) -> Result<usize> {
    if !backoff.lock().due() {
        return Ok(0);
    }
    let result = pass.await;
    match &result {
        Ok(_) => backoff.lock().succeeded(),
        Err(e) => {
            telemetry::move_failed();
            let wait = backoff.lock().failed();
            tracing::error!(archive = %archive.location(), signal, error = %e,
                retry_in_s = wait.as_secs(), "moving data to the archive failed; it stays local");
        }
    }
    result
}

impl Archive {
    /// Reads the manifest if needed; an error while it cannot be read (nothing may be moved
    /// or deleted before the archive's contents are known).
    pub async fn require_manifest(&self) -> Result<()> {
        if self.ensure_manifest().await {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "archive {}: manifest not readable",
                self.location
            )))
        }
    }

    /// [`Archive::sweep_unnamed`] of `signals`, once per process: `swept` turns true after a
    /// sweep that succeeded. `local_names` are the file names (`part-<source>.parquet`) the
    /// store's local blocks, partitions or segments will write, which the sweep keeps.
    pub async fn sweep_once(
        &self,
        swept: &std::sync::atomic::AtomicBool,
        signals: &[String],
        local_names: &std::collections::HashSet<String>,
    ) {
        use std::sync::atomic::Ordering;
        if swept.load(Ordering::Acquire) {
            return;
        }
        for signal in signals {
            let kept = |path: &str| {
                path.rsplit('/')
                    .next()
                    .is_some_and(|name| local_names.contains(name))
            };
            if let Err(e) = self.sweep_unnamed(signal, kept).await {
                tracing::warn!(signal = %signal, error = %e, "sweeping unnamed archive files failed");
                return;
            }
        }
        swept.store(true, Ordering::Release);
    }

    /// Deletes the files of `signals` whose newest record is older than `cutoff_ms`: the
    /// manifest first, then the objects [failpoint `archive.<first signal>.before_expire_delete`
    /// between the two]. A crash between the two leaves unnamed files for the sweep.
    pub async fn expire(&self, signals: &[String], cutoff_ms: i64) -> Result<()> {
        let expired: Vec<String> = signals
            .iter()
            .flat_map(|signal| self.files(signal, i64::MIN, cutoff_ms))
            .filter(|f| f.max_time < cutoff_ms)
            .map(|f| f.path)
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let remove = expired.clone();
        self.edit_manifest(|m| m.remove(&remove)).await?;
        if let Some(first) = signals.first() {
            failpoint::hit(&format!("archive.{first}.before_expire_delete"));
        }
        tracing::info!(
            signal = signals.first().map(String::as_str).unwrap_or(""),
            files = expired.len(),
            "archived files deleted by retention"
        );
        self.delete(expired).await
    }

    /// Deletes the files under `signal/` that the manifest does not name and `local_source`
    /// does not claim (a file a local block or partition will write again): what a move or
    /// an expiry killed half-way left behind.
    pub async fn sweep_unnamed(
        &self,
        signal: &str,
        local_source: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let named: std::collections::HashSet<String> = self
            .files(signal, i64::MIN, i64::MAX)
            .into_iter()
            .map(|f| f.path)
            .collect();
        let unnamed: Vec<String> = self
            .list(signal)
            .await?
            .into_iter()
            .filter(|p| !named.contains(p) && !local_source(p))
            .collect();
        if !unnamed.is_empty() {
            tracing::info!(
                signal,
                files = unnamed.len(),
                "deleting archive files no manifest entry names"
            );
            self.delete(unnamed).await?;
        }
        Ok(())
    }
}

/// The whole object at `path`.
async fn fetch(store: &dyn ObjectStore, path: &ObjectPath) -> object_store::Result<Bytes> {
    store.get(path).await?.bytes().await
}

fn object_err(location: &str, path: &ObjectPath, e: object_store::Error) -> StoreError {
    StoreError::Unavailable(format!("archive {location}: {path}: {e}"))
}

/// The archive's I/O runtime: one thread that lives as long as the process (a runtime must
/// not be dropped inside another one, which shutting the server down would do).
fn io_runtime() -> Result<tokio::runtime::Handle> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("archive-io".to_string())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(rt.handle().clone()));
            rt.block_on(std::future::pending::<()>());
        })
        .map_err(|e| StoreError::Unavailable(format!("starting the archive i/o thread: {e}")))?;
    rx.recv()
        .map_err(|_| StoreError::Unavailable("archive i/o thread exited".to_string()))?
        .map_err(|e| StoreError::Unavailable(format!("archive i/o runtime: {e}")))
}

/// Recently read files, evicted oldest first past [`CACHE_BYTES`].
#[derive(Default)]
struct FileCache {
    files: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
}

impl FileCache {
    fn get(&self, path: &str) -> Option<Bytes> {
        self.files.get(path).cloned()
    }

    fn insert(&mut self, path: &str, bytes: Bytes) {
        if bytes.len() > CACHE_BYTES / 4 || self.files.contains_key(path) {
            return;
        }
        self.bytes += bytes.len();
        self.files.insert(path.to_string(), bytes);
        self.order.push_back(path.to_string());
        while self.bytes > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.files.remove(&old) {
                self.bytes -= b.len();
            }
        }
    }

    fn remove(&mut self, path: &str) {
        if let Some(b) = self.files.remove(path) {
            self.bytes -= b.len();
            self.order.retain(|p| p != path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_resets() {
        let mut b = Backoff::default();
        assert!(b.due());
        assert_eq!(b.failed(), Duration::from_secs(1));
        assert!(!b.due());
        assert_eq!(b.failed(), Duration::from_secs(2));
        for _ in 0..20 {
            b.failed();
        }
        assert_eq!(b.delay, Duration::from_secs(300));
        b.succeeded();
        assert!(b.due());
    }
}
