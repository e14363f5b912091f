//! WAL append throughput under each fsync policy, with concurrent appenders so group commit
//! has something to group. Plain `Instant` timing: run with
//! `cargo bench -p lookout-store --bench wal`.

use std::sync::Arc;
use std::time::Instant;

use store::config::{FsyncPolicy, WalOptions};
use store::wal::Wal;

const APPENDERS: usize = 64;
const APPENDS_PER_APPENDER: usize = 500;
const PAYLOAD_BYTES: usize = 256;

async fn run(policy: FsyncPolicy, label: &str) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let opts = WalOptions {
        dir: dir.path().join(label),
        fsync: policy,
        segment_size_bytes: 64 * 1024 * 1024,
        max_pending_appends: 100_000,
    };
    let wal = Arc::new(Wal::open(opts, |_, _| Ok(()))?);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(APPENDERS);
    for t in 0..APPENDERS {
        let wal = Arc::clone(&wal);
        tasks.push(tokio::spawn(async move {
            for i in 0..APPENDS_PER_APPENDER {
                let mut payload = vec![0u8; PAYLOAD_BYTES];
                payload[..8]
                    .copy_from_slice(&((t * APPENDS_PER_APPENDER + i) as u64).to_le_bytes());
                wal.append(payload).await?;
            }
            Ok::<_, store::StoreError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    wal.close().await?;
    let total = (APPENDERS * APPENDS_PER_APPENDER) as f64;
    println!(
        "wal append, fsync {label:<6}: {total} appends of {PAYLOAD_BYTES} B by {APPENDERS} tasks in {:.3} s = {:.0} appends/s, {:.1} MB/s",
        elapsed.as_secs_f64(),
        total / elapsed.as_secs_f64(),
        total * PAYLOAD_BYTES as f64 / elapsed.as_secs_f64() / 1e6,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(FsyncPolicy::Always, "always").await?;
    run(
        FsyncPolicy::Interval(std::time::Duration::from_millis(200)),
        "200ms",
    )
    .await?;
    run(FsyncPolicy::Never, "never").await?;
    Ok(())
}
