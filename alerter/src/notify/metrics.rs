//! The notifiers' self-metrics (contract names), in the process-wide `prometheus` registry,
//! each registered once.

use std::sync::LazyLock;

use prometheus::{register_histogram, register_int_counter_vec, Histogram, IntCounterVec};

fn fail(name: &str, e: prometheus::Error) -> ! {
    panic!("registering {name}: {e}")
}

/// Delivery attempts by outcome (`success`, `retrying`, `failed`).
pub static NOTIFICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_notifications_total",
        "Notification delivery attempts, by receiver, integration and outcome (success, retrying, failed).",
        &["receiver", "integration", "outcome"]
    )
    .unwrap_or_else(|e| fail("lookout_notifications_total", e))
});

/// Time from handing a notification to an integration until it was delivered or given up.
pub static LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "lookout_notification_latency_seconds",
        "Seconds from a notification handed to an integration until delivered or given up (retries and rate-limit waits included).",
        vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
    )
    .unwrap_or_else(|e| fail("lookout_notification_latency_seconds", e))
});

/// Notifications that went out merged with others into one digest message.
pub static DIGESTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "lookout_notifications_digested_total",
        "Notifications merged into a digest because the robot's rate limit was reached, by receiver and integration.",
        &["receiver", "integration"]
    )
    .unwrap_or_else(|e| fail("lookout_notifications_digested_total", e))
});
