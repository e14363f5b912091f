//! End-to-end alert latency: from the remote write of the sample that makes a rule's
//! condition true to the fake robot ([`super::robot`]) receiving the DingTalk message.
//!
//! Lookout runs with one alerting rule (`bench_latency_trigger > 0`, `for: 0s`) evaluated
//! every second, a route grouping by the `trial` label (so every trial is a new aggregation
//! group and waits `group_wait`, not `group_interval`) and a `dingtalk_configs` robot at the
//! fake robot's URL. Each trial writes `bench_latency_trigger{trial="..."} 1` for a new
//! series and waits for the message naming that trial. Trials start at a seeded random
//! point of the evaluation interval, so the figures cover every phase; they are spaced so the
//! robot's 20 messages a minute are never exceeded (which would digest messages).
//!
//! The target is `for + evaluation_interval + group_wait + 1 s`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::robot::Robot;
use crate::error::{BenchError, Result};
use crate::report::Latency;
use crate::servers::{Binaries, ServerHandle, ServerKind};
use crate::{proto, send};

/// Smallest spacing between trial starts: 60 s / 20 messages, plus margin.
const MIN_SPACING: Duration = Duration::from_millis(3300);
const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Serialize)]
pub struct LatencyRun {
    pub group_wait_ms: u64,
    pub evaluation_interval_ms: u64,
    pub for_ms: u64,
    pub target_ms: f64,
    pub trials: usize,
    /// Trials whose message never came within the timeout.
    pub missed: usize,
    /// Messages that named no pending trial (e.g. a digest); none are expected.
    pub unexpected_messages: usize,
    pub latency: Latency,
    pub samples_ms: Vec<f64>,
    /// Whether the p90 is within the target (every trial counted, a missed one as infinite).
    pub p90_within_target: bool,
}

/// The trial's label value; unique and unlikely to appear in a message by accident.
pub fn marker(trial: usize) -> String {
    format!("bench-trial-{trial:04}-x")
}

fn rule_file(interval_ms: u64) -> String {
    format!(
        "groups:\n  - name: latency\n    interval: {interval_ms}ms\n    rules:\n      - alert: BenchLatency\n        expr: bench_latency_trigger > 0\n        for: 0s\n        labels: {{ severity: critical }}\n        annotations:\n          summary: 'latency trial {{{{ $labels.trial }}}}'\n"
    )
}

fn lookout_config(robot_url: &str, interval_ms: u64, group_wait_ms: u64) -> String {
    format!(
        "# written by lookout-bench rules (end-to-end latency)\nglobal:\n  evaluation_interval: {interval_ms}ms\nrule_files: [latency-rules.yaml]\nalerting:\n  route:\n    receiver: robot\n    group_by: [trial]\n    group_wait: {group_wait_ms}ms\n    group_interval: 1s\n    repeat_interval: 4h\n  receivers:\n    - name: robot\n      dingtalk_configs:\n        - url: \"{robot_url}\"\n          send_resolved: false\n"
    )
}

fn trigger_request(trial: usize, value: f64) -> Bytes {
    let labels = proto::encode_labels(&[
        ("__name__".to_string(), "bench_latency_trigger".to_string()),
        ("trial".to_string(), marker(trial)),
    ]);
    let mut body = Vec::new();
    proto::push_series(&labels, value, crate::now_ms(), &mut body);
    Bytes::from(
        snap::raw::Encoder::new()
            .compress_vec(&body)
            .unwrap_or_default(),
    )
}

async fn write(client: &reqwest::Client, url: &str, trial: usize, value: f64) -> Result<()> {
    let st = send::send_batch(
        client,
        url,
        Arc::new(vec![trigger_request(trial, value)]),
        Arc::new(vec![1]),
        1,
    )
    .await?;
    if st.samples_ok != 1 {
        return Err(BenchError::Server {
            server: "lookout".into(),
            reason: format!(
                "latency trigger not accepted: {}",
                st.first_error.unwrap_or_default()
            ),
        });
    }
    Ok(())
}

/// Waits until `lookout`'s `/api/v1/rules` lists the latency group as evaluated.
async fn wait_evaluating(h: &ServerHandle, client: &reqwest::Client) -> Result<()> {
    let url = format!("{}/api/v1/rules", h.base_url());
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        match client.get(&url).send().await {
            Ok(r) => {
                let text = r.text().await.unwrap_or_default();
                if text.contains("\"latency\"") && text.contains("\"lastEvaluation\"") {
                    return Ok(());
                }
                last = text.chars().take(300).collect();
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(BenchError::Server {
        server: "lookout".into(),
        reason: format!("the latency rule group was not evaluated within 60s: {last}"),
    })
}

/// Runs `trials` trials against a fresh Lookout configured with `group_wait`.
pub async fn run(
    work: &Path,
    bins: &Binaries,
    trials: usize,
    interval: Duration,
    group_wait: Duration,
    seed: u64,
) -> Result<LatencyRun> {
    let mut robot = Robot::start().await?;
    let dir = work.join(format!("latency-gw{}ms", group_wait.as_millis()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
    let interval_ms = interval.as_millis() as u64;
    let group_wait_ms = group_wait.as_millis() as u64;
    let rules = dir.join("latency-rules.yaml");
    std::fs::write(&rules, rule_file(interval_ms)).map_err(|e| BenchError::io(&rules, e))?;
    let cfg = dir.join("lookout.yaml");
    std::fs::write(&cfg, lookout_config(&robot.url, interval_ms, group_wait_ms))
        .map_err(|e| BenchError::io(&cfg, e))?;
    let bins = Binaries {
        lookout_config: Some(cfg),
        ..bins.clone()
    };
    let client = super::client(Duration::from_secs(10))?;
    let mut h = ServerHandle::start_in(ServerKind::Lookout, &dir, &bins)?;
    h.wait_ready(&client, Duration::from_secs(60)).await?;
    wait_evaluating(&h, &client).await?;
    let url = h.write_url();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut samples = Vec::new();
    let mut missed = 0;
    let mut unexpected = 0;
    let mut next_start = Instant::now();
    for trial in 0..trials {
        // a random phase within the evaluation interval, after the spacing
        let jitter = Duration::from_millis(rng.random_range(0..interval_ms.max(1)));
        tokio::time::sleep_until((next_start + jitter).into()).await;
        while let Ok(m) = robot.messages.try_recv() {
            tracing::warn!(path = %m.path, body = %m.body.chars().take(200).collect::<String>(), "message outside any trial");
            unexpected += 1;
        }
        let sent_at = Instant::now();
        next_start = sent_at + MIN_SPACING;
        write(&client, &url, trial, 1.0).await?;
        let want = marker(trial);
        let deadline = sent_at + TRIAL_TIMEOUT;
        let got = loop {
            match tokio::time::timeout_at(deadline.into(), robot.messages.recv()).await {
                Ok(Some(m)) if m.body.contains(&want) => break Some(m.at),
                Ok(Some(m)) => {
                    tracing::warn!(trial, path = %m.path, body = %m.body.chars().take(200).collect::<String>(), "message for another trial");
                    unexpected += 1;
                }
                Ok(None) | Err(_) => break None,
            }
        };
        match got {
            Some(at) => {
                let ms = at.duration_since(sent_at).as_secs_f64() * 1000.0;
                tracing::info!(trial, latency_ms = ms as u64, "alert delivered");
                samples.push(ms);
            }
            None => {
                tracing::error!(trial, "no message within {}s", TRIAL_TIMEOUT.as_secs());
                missed += 1;
            }
        }
        // resolve it (send_resolved is off: no message), keeping the firing set small
        write(&client, &url, trial, 0.0).await?;
    }
    h.stop(Duration::from_secs(60)).await?;
    let target_ms = (interval_ms + group_wait_ms + 1000) as f64;
    let latency = Latency::of(&samples);
    let mut all = samples.clone();
    all.extend(std::iter::repeat_n(f64::INFINITY, missed));
    all.sort_by(|a, b| a.total_cmp(b));
    let p90 = all
        .get(((0.9 * all.len() as f64).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(f64::INFINITY);
    Ok(LatencyRun {
        group_wait_ms,
        evaluation_interval_ms: interval_ms,
        for_ms: 0,
        target_ms,
        trials,
        missed,
        unexpected_messages: unexpected,
        latency,
        samples_ms: samples,
        p90_within_target: p90 <= target_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_rules_name_the_robot_and_the_timers() {
        let c = lookout_config("http://127.0.0.1:1/robot/send?access_token=bench", 1000, 0);
        assert!(c.contains("url: \"http://127.0.0.1:1/robot/send?access_token=bench\""));
        assert!(c.contains("group_wait: 0ms"));
        assert!(c.contains("evaluation_interval: 1000ms"));
        assert!(c.contains("group_by: [trial]"));
        let r = rule_file(1000);
        assert!(r.contains("interval: 1000ms"));
        assert!(r.contains("for: 0s"));
        assert!(r.contains("'latency trial {{ $labels.trial }}'"), "{r}");
    }

    #[test]
    fn trigger_is_a_valid_remote_write_request() {
        let body = trigger_request(7, 1.0);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        // the label value is in the protobuf as is
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("bench_latency_trigger"));
        assert!(text.contains(&marker(7)));
        assert_ne!(marker(7), marker(17));
        assert!(!marker(17).contains(&marker(7)));
    }
}
