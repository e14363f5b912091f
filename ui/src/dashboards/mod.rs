//! Dashboards as code: YAML files of rows of panels (PromQL or log queries) with variables.
//!
//! * [`model`]: the schema, its validation and variable interpolation (both sides).
//! * `load` (feature `ssr`): the built-in dashboards and `ui.dashboards_dir`, re-read when the
//!   files change, and the JSON API the pages read (`/api/v1/dashboards[/{id}]`).
//!
//! The types below are that API's answers, shared by the server and the pages.

pub mod model;

#[cfg(feature = "ssr")]
pub mod load;

use serde::{Deserialize, Serialize};

use model::{Dashboard, DashboardError};

/// One dashboard and where it came from (`built-in` or its file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadedDashboard {
    pub source: String,
    pub dashboard: Dashboard,
}

/// A line of the dashboards list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DashboardSummary {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub source: String,
    pub panels: usize,
}

/// `data` of `GET /api/v1/dashboards`: the dashboards and the problems of files that did not
/// load (a file that broke after loading is still listed, in its last good version).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DashboardList {
    pub dashboards: Vec<DashboardSummary>,
    pub errors: Vec<DashboardError>,
}
