//! The alerter as the binary and the API see it: rules -> dispatcher -> notifiers.
//!
//! [`Alerter::start`] opens the state database (`<data_dir>/alerter`), builds the
//! notifiers, starts the dispatcher over them and the rule manager over the stores, with
//! the dispatcher as the rules' alert sink. It is given rule groups its caller has already
//! read and validated (the binary's config loading does, so each file is parsed once), as
//! is [`Alerter::reload`], which takes validated groups
//! and checks the rest before it changes anything, so a bad reload keeps the old config;
//! alert state, `for` clocks, silences and the notification log survive it.
//! [`Alerter::shutdown`] stops rule evaluation, lets the dispatcher persist, then flushes
//! the database.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use store::logs::LogsQuerier;
use store::promql::EngineOptions;
use store::traces::TracesQuerier;
use store::{MetricsAppender, MetricsQuerier};

use async_trait::async_trait;

use crate::dispatch::config::AlertingConfig;
use crate::dispatch::{Deliver, Dispatcher, Integrations};
use crate::model::{AlertSink, LabelSet, Notification};
use crate::notify::{Delivered, Delivery, Notifier, NotifierOptions, NotifyError};
use crate::rules::file::RuleGroup;
use crate::rules::manager::{RuleManager, RuleSettings, RuleSources};
use crate::state::{StateDb, StateError};

/// What the alerter starts with.
#[derive(Clone, Debug)]
pub struct AlerterOptions {
    /// `<data_dir>/alerter`: the state database lives here.
    pub data_dir: PathBuf,
    /// Base URL of the UI for links in messages (`server.external_url`).
    pub external_url: String,
    pub external_labels: LabelSet,
    /// Interval of rule groups that set none.
    pub evaluation_interval: Duration,
    /// The `alerting:` section, or [`AlertingConfig::none`] without one.
    pub alerting: Arc<AlertingConfig>,
    /// Limits of the PromQL engine rules are evaluated with.
    pub engine: EngineOptions,
}

/// What a reload may change.
#[derive(Clone, Debug)]
pub struct ReloadConfig {
    pub external_url: String,
    pub external_labels: LabelSet,
    pub evaluation_interval: Duration,
    /// The rule files' groups, already read and validated (the config loading that found
    /// the files did it, so they are not parsed a second time here).
    pub rule_groups: Vec<RuleGroup>,
    pub alerting: Arc<AlertingConfig>,
}

/// Why the alerter could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlerterError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("alerting: {}", .0.join("; "))]
    Config(Vec<String>),
}

/// The notifier as the dispatcher sees it: each receiver's integrations.
struct NotifierIntegrations(Arc<Notifier>);

/// One integration (retries, limiter and attempt records inside) as the dispatcher
/// delivers through it.
struct DeliveryHandle(Arc<Delivery>);

impl Integrations for NotifierIntegrations {
    fn integrations(&self, receiver: &str) -> Option<Vec<Arc<dyn Deliver>>> {
        self.0.integrations(receiver).map(|list| {
            list.into_iter()
                .map(|d| Arc::new(DeliveryHandle(d)) as Arc<dyn Deliver>)
                .collect()
        })
    }
}

#[async_trait]
impl Deliver for DeliveryHandle {
    fn name(&self) -> String {
        self.0.name().to_string()
    }

    fn send_resolved(&self) -> bool {
        self.0.send_resolved()
    }

    async fn deliver(&self, n: &Notification) -> Result<Delivered, NotifyError> {
        self.0.deliver(n).await
    }
}

/// Rule evaluation, alert routing and notification in one; see the module docs.
pub struct Alerter {
    db: StateDb,
    notifier: Arc<Notifier>,
    dispatcher: Arc<Dispatcher>,
    rules: RuleManager,
}

impl Alerter {
    /// Starts everything with `groups`, read and validated by the caller; see the module
    /// docs.
    pub async fn start(
        opts: AlerterOptions,
        groups: Vec<RuleGroup>,
        metrics: Arc<dyn MetricsQuerier>,
        appender: Arc<dyn MetricsAppender>,
        logs: Arc<dyn LogsQuerier>,
        traces: Arc<dyn TracesQuerier>,
    ) -> Result<Arc<Alerter>, AlerterError> {
        let dir = opts.data_dir.clone();
        let db = tokio::task::spawn_blocking(move || StateDb::open(&dir))
            .await
            .map_err(|e| StateError {
                what: "opening".into(),
                message: e.to_string(),
            })??;
        let notifier = Notifier::new(
            &opts.alerting.receivers,
            NotifierOptions {
                external_url: opts.external_url.clone(),
                language: opts.alerting.language,
                state: db.clone(),
            },
        )
        .map_err(AlerterError::Config)?;
        let receivers = opts.alerting.receivers.len();
        let dispatcher = Dispatcher::start(
            opts.alerting.clone(),
            Arc::new(NotifierIntegrations(notifier.clone())),
            db.clone(),
            opts.external_url.clone(),
        )?;
        let rules = RuleManager::start(
            groups,
            RuleSettings {
                external_labels: opts.external_labels,
                external_url: opts.external_url,
                evaluation_interval: opts.evaluation_interval,
            },
            RuleSources {
                metrics,
                appender,
                logs: Some(logs),
                traces: Some(traces),
                sink: dispatcher.clone() as Arc<dyn AlertSink>,
            },
            opts.engine,
            db.tree("rules")?,
        );
        tracing::info!(rule_groups = rules.len(), receivers, "alerter started");
        Ok(Arc::new(Alerter {
            db,
            notifier,
            dispatcher,
            rules,
        }))
    }

    /// Applies a new config and rule groups (validated by the caller). The receivers are
    /// checked first: on an error nothing changes and every error is returned.
    pub async fn reload(&self, new: ReloadConfig) -> Result<(), Vec<String>> {
        // the notifier checks its receivers before it swaps them in: an error leaves the old
        self.notifier
            .reconfigure(&new.alerting.receivers, new.alerting.language)?;
        self.dispatcher.apply_config(new.alerting.clone());
        self.rules
            .update(
                new.rule_groups,
                RuleSettings {
                    external_labels: new.external_labels,
                    external_url: new.external_url,
                    evaluation_interval: new.evaluation_interval,
                },
            )
            .await;
        Ok(())
    }

    pub fn rules(&self) -> &RuleManager {
        &self.rules
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Stops rule evaluation (waiting for evaluations under way), lets the dispatcher
    /// persist its state, then flushes the database.
    pub async fn shutdown(&self) {
        self.rules.shutdown().await;
        self.dispatcher.shutdown().await;
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(())) => tracing::info!("alerter state flushed"),
            Ok(Err(e)) => tracing::error!(error = %e, "flushing the alerter state"),
            Err(e) => tracing::error!(error = %e, "flushing the alerter state failed"),
        }
    }
}
