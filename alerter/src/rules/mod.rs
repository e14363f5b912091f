//! Prometheus rule files and their evaluation.
//!
//! * [`file`]: rule files (Prometheus's format plus `logs_expr` log rules), parsed and
//!   validated with every error located by file and line.
//! * [`template`]: the Go `text/template` subset rule labels and annotations use.
//! * [`eval`]: one group's evaluation at one time: the alert state machine, recording
//!   rules, `ALERTS`/`ALERTS_FOR_STATE`, what to send, and the state that is persisted.
//! * [`unittest`]: `promtool test rules` files run against this evaluator.
//! * [`manager`]: runs groups on their intervals, persists their state, serves status.

pub mod eval;
pub mod file;
pub mod manager;
pub mod template;
pub mod unittest;
