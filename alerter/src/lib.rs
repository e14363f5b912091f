//! Lookout's alerter: rule evaluation, alert state, routing and notifiers.
//!
//! Write path, as Prometheus + Alertmanager split it:
//! * [`rules`]: Prometheus rule files (plus `logs_expr` log rules) are parsed and validated,
//!   each group is evaluated on its interval against the metrics store (PromQL) and the log
//!   store; alerting rules move through inactive -> pending -> firing -> resolved, with
//!   their state persisted; recording rules and `ALERTS`/`ALERTS_FOR_STATE` are written
//!   back as series. Evaluation hands alerts to an [`model::AlertSink`] and never waits on
//!   the network.
//! * [`dispatch`]: Alertmanager's semantics: the route tree, aggregation groups with
//!   `group_wait`/`group_interval`/`repeat_interval`, inhibition, silences, and the
//!   notification log that keeps restarts from notifying twice.
//! * [`notify`]: receivers (DingTalk, WeCom, email, webhook) as plug-ins, retries, the
//!   per-robot rate limiter with digests, and the record of every delivery attempt.
//! * [`template`]: minijinja message templates, Chinese and English defaults, links back
//!   to the UI.
//! * [`service`]: [`service::Alerter`], the pieces above started together over the stores
//!   (rules -> dispatcher -> notifiers), reloaded together, shut down in order; the rule
//!   manager ([`rules::manager`]) runs each group on its interval and persists its state.
//! * [`state`]: the sled database the pieces above persist into.
//! * [`model`]: the alert and notification types they share.

pub mod dispatch;
pub mod model;
pub mod notify;
pub mod rules;
pub mod service;
pub mod state;
pub mod template;

/// The store crate this alerter evaluates rules against.
pub use store as metrics_store;
