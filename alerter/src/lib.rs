//! Lookout's alerter: rule evaluation, alert state, routing and notifiers.
//!
//! Not built yet: rule evaluation arrives with the alerting issue. The crate exists so the
//! workspace has its final shape and the dependency direction (`alerter -> store`) is fixed.

/// The store crate this alerter evaluates rules against.
pub use store as metrics_store;
