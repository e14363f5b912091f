//! Named crash points for the crash tests: with `LOOKOUT_FAILPOINT=<step>` in the
//! environment the process aborts (as `kill -9` would end it: no flush, no cleanup) when it
//! reaches that step. Unset, a check is one comparison against a value read once.

use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process if `step` is the armed failpoint.
pub fn hit(step: &str) {
    let armed = ARMED.get_or_init(|| std::env::var("LOOKOUT_FAILPOINT").ok());
    if armed.as_deref() == Some(step) {
        eprintln!("LOOKOUT_FAILPOINT={step}: aborting the process here");
        std::process::abort();
    }
}
