//! Loading dashboards on the server: the built-in ones (the repository's `dashboards/*.yaml`,
//! embedded in the binary) and the user's files in `ui.dashboards_dir`, re-read when they
//! change, served as JSON at `GET /api/v1/dashboards` and `GET /api/v1/dashboards/{id}`.
//!
//! The directory is polled (file names, sizes and modification times every
//! [`POLL_INTERVAL`]) rather than watched: it works the same on every file system, including
//! the symlink swaps of a Kubernetes ConfigMap volume. A file that stops validating keeps its
//! last good version, and its errors are logged and listed with the dashboards, so a typo
//! never blanks a dashboard people are looking at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::model::{self, Dashboard, DashboardError};
use super::{DashboardList, DashboardSummary, LoadedDashboard};

/// How often the dashboards directory is looked at for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The built-in dashboards: (name in errors, YAML).
pub const BUILTIN: [(&str, &str); 3] = [
    (
        "dashboards/service-overview.yaml",
        include_str!("../../../dashboards/service-overview.yaml"),
    ),
    (
        "dashboards/lookout.yaml",
        include_str!("../../../dashboards/lookout.yaml"),
    ),
    (
        "dashboards/node.yaml",
        include_str!("../../../dashboards/node.yaml"),
    ),
];

/// The source of a built-in dashboard in the API's answers.
pub const BUILTIN_SOURCE: &str = "built-in";

/// The built-in dashboards that validate, and the problems of those that do not (none in a
/// tested build).
pub fn builtin() -> (Vec<Dashboard>, Vec<DashboardError>) {
    let mut good = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in BUILTIN {
        match model::parse(file, text) {
            Ok(d) => good.push(d),
            Err(e) => errors.extend(e),
        }
    }
    (good, errors)
}

/// The dashboard files of `dir` (`*.yaml`, `*.yml`, not in subdirectories), sorted.
pub fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, DashboardError> {
    let unreadable = |e: std::io::Error| DashboardError {
        file: dir.display().to_string(),
        line: None,
        message: format!("cannot read the dashboards directory: {e}"),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and validates one dashboard file.
pub fn load_file(path: &Path) -> Result<Dashboard, Vec<DashboardError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![DashboardError {
            file: name.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        }]
    })?;
    model::parse(&name, &text)
}

/// Every problem of the dashboards in `dir`, as `lookout check-config` reports them: files
/// that do not validate, and ids used by two files.
pub fn check_dir(dir: &Path) -> Vec<DashboardError> {
    let files = match dir_files(dir) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    let mut loaded = Vec::new();
    for f in files {
        match load_file(&f) {
            Ok(d) => loaded.push((f, d)),
            Err(e) => errors.extend(e),
        }
    }
    let (_, dup) = merge(Vec::new(), loaded);
    errors.extend(dup);
    errors
}

/// The built-in dashboards and the user's: a user file with a built-in's id replaces it (to
/// adapt one, copy it); of two user files with one id the first (by name) is kept.
fn merge(
    builtins: Vec<Dashboard>,
    user: Vec<(PathBuf, Dashboard)>,
) -> (Vec<LoadedDashboard>, Vec<DashboardError>) {
    let mut out: Vec<LoadedDashboard> = builtins
        .into_iter()
        .map(|dashboard| LoadedDashboard {
            source: BUILTIN_SOURCE.into(),
            dashboard,
        })
        .collect();
    let builtin_count = out.len();
    let mut errors = Vec::new();
    for (path, d) in user {
        match out.iter().position(|e| e.dashboard.id == d.id) {
            Some(i) if i < builtin_count && out[i].source == BUILTIN_SOURCE => {
                out[i] = LoadedDashboard {
                    source: path.display().to_string(),
                    dashboard: d,
                }
            }
            Some(i) => errors.push(DashboardError {
                file: path.display().to_string(),
                line: None,
                message: format!(
                    "id {:?} is already the id of {}; give one of them another id",
                    d.id, out[i].source
                ),
            }),
            None => out.push(LoadedDashboard {
                source: path.display().to_string(),
                dashboard: d,
            }),
        }
    }
    (out, errors)
}

/// What is served now.
#[derive(Clone, Debug, Default)]
struct Catalog {
    dashboards: Vec<LoadedDashboard>,
    errors: Vec<DashboardError>,
}

/// One file as last seen: (path, size, modification time).
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// Reads the user directory, keeping each file's last good version.
struct Loader {
    dir: Option<PathBuf>,
    builtins: Vec<Dashboard>,
    builtin_errors: Vec<DashboardError>,
    last_good: BTreeMap<PathBuf, Dashboard>,
    seen: Option<Fingerprint>,
}

impl Loader {
    fn fingerprint(&self) -> Fingerprint {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        dir_files(dir)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let meta = std::fs::metadata(&p).ok();
                let len = meta.as_ref().map_or(0, |m| m.len());
                let mtime = meta.and_then(|m| m.modified().ok());
                (p, len, mtime)
            })
            .collect()
    }

    /// A new catalog if the directory changed since the last call.
    fn reload_if_changed(&mut self) -> Option<Catalog> {
        let fp = self.fingerprint();
        if self.seen.as_ref() == Some(&fp) {
            return None;
        }
        self.seen = Some(fp);
        let mut errors = self.builtin_errors.clone();
        let mut user = Vec::new();
        if let Some(dir) = &self.dir {
            match dir_files(dir) {
                Err(e) => {
                    tracing::warn!(error = %e, "dashboards directory unreadable; keeping its dashboards as they were");
                    errors.push(e);
                    user.extend(self.last_good.iter().map(|(p, d)| (p.clone(), d.clone())));
                }
                Ok(files) => {
                    let mut good = BTreeMap::new();
                    for f in files {
                        match load_file(&f) {
                            Ok(d) => {
                                good.insert(f, d);
                            }
                            Err(es) => {
                                let kept = self.last_good.get(&f).cloned();
                                for e in &es {
                                    tracing::warn!(
                                        error = %e,
                                        kept_last_good = kept.is_some(),
                                        "dashboard file does not validate"
                                    );
                                }
                                errors.extend(es);
                                if let Some(d) = kept {
                                    good.insert(f, d);
                                }
                            }
                        }
                    }
                    user.extend(good.iter().map(|(p, d)| (p.clone(), d.clone())));
                    self.last_good = good;
                }
            }
        }
        let (dashboards, dup) = merge(self.builtins.clone(), user);
        for e in &dup {
            tracing::warn!(error = %e, "dashboard id used twice");
        }
        errors.extend(dup);
        tracing::info!(
            dashboards = dashboards.len(),
            problems = errors.len(),
            "dashboards loaded"
        );
        Some(Catalog { dashboards, errors })
    }
}

/// The dashboards being served; cheap to clone.
#[derive(Clone)]
pub struct Dashboards(Arc<RwLock<Catalog>>);

impl Dashboards {
    /// Loads the built-in dashboards and those in `dir`, and (inside a Tokio runtime) starts
    /// polling `dir` for changes.
    pub fn start(dir: Option<PathBuf>) -> Self {
        let (builtins, builtin_errors) = builtin();
        let mut loader = Loader {
            dir,
            builtins,
            builtin_errors,
            last_good: BTreeMap::new(),
            seen: None,
        };
        let first = loader.reload_if_changed().unwrap_or_default();
        let this = Dashboards(Arc::new(RwLock::new(first)));
        if loader.dir.is_some() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let target = this.clone();
                rt.spawn(poll(loader, target));
            }
        }
        this
    }

    fn read(&self) -> Catalog {
        // a poisoned lock still holds a whole catalog: it is only ever replaced whole
        match self.0.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn replace(&self, c: Catalog) {
        match self.0.write() {
            Ok(mut g) => *g = c,
            Err(p) => *p.into_inner() = c,
        }
    }

    /// The list the dashboards page shows.
    pub fn list(&self) -> DashboardList {
        let c = self.read();
        DashboardList {
            dashboards: c
                .dashboards
                .iter()
                .map(|l| DashboardSummary {
                    id: l.dashboard.id.clone(),
                    title: l.dashboard.title.clone(),
                    description: l.dashboard.description.clone(),
                    tags: l.dashboard.tags.clone(),
                    source: l.source.clone(),
                    panels: l.dashboard.rows.iter().map(|r| r.panels.len()).sum(),
                })
                .collect(),
            errors: c.errors,
        }
    }

    /// One dashboard by id.
    pub fn get(&self, id: &str) -> Option<LoadedDashboard> {
        self.read()
            .dashboards
            .into_iter()
            .find(|l| l.dashboard.id == id)
    }
}

async fn poll(mut loader: Loader, target: Dashboards) {
    let mut every = tokio::time::interval(POLL_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        // file reads off the async workers
        let result = tokio::task::spawn_blocking(move || {
            let c = loader.reload_if_changed();
            (loader, c)
        })
        .await;
        match result {
            Ok((l, c)) => {
                loader = l;
                if let Some(c) = c {
                    target.replace(c);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "dashboards reload task failed; reloading stops");
                return;
            }
        }
    }
}

#[derive(Serialize)]
struct Success<T> {
    status: &'static str,
    data: T,
}

fn success<T: Serialize>(data: T) -> Response {
    Json(Success {
        status: "success",
        data,
    })
    .into_response()
}

async fn list(State(d): State<Dashboards>) -> Response {
    success(d.list())
}

async fn one(State(d): State<Dashboards>, UrlPath(id): UrlPath<String>) -> Response {
    match d.get(&id) {
        Some(l) => success(l),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({
                "status": "error",
                "errorType": "not_found",
                "error": format!("no dashboard with id {id:?}"),
            })),
        )
            .into_response(),
    }
}

/// `GET /api/v1/dashboards` and `GET /api/v1/dashboards/{id}`.
pub fn routes(d: Dashboards) -> Router {
    Router::new()
        .route("/api/v1/dashboards", get(list))
        .route("/api/v1/dashboards/{id}", get(one))
        .with_state(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_dashboards_validate_and_their_promql_parses() {
        let (good, errors) = builtin();
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(good.len(), BUILTIN.len());
        let ids: Vec<&str> = good.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["service-overview", "lookout", "node"]);
        // and each expression, with the variables at sample values, is valid PromQL
        for d in &good {
            let mut values = model::builtin_values(15.0, 3600.0);
            for v in &d.variables {
                values.insert(v.name.clone(), "x".into());
            }
            for p in d.rows.iter().flat_map(|r| &r.panels) {
                if let Some(e) = &p.expr {
                    let e = model::interpolate(e, &values);
                    assert!(
                        promql_parser::parser::parse(&e).is_ok(),
                        "{}: {:?}: {e}",
                        d.id,
                        p.title
                    );
                }
            }
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lookout-ui-dash-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const GOOD: &str =
        "title: Mine\nrows:\n  - panels:\n      - {title: Up, type: stat, expr: up}\n";

    #[test]
    fn directory_errors_name_file_and_problem_and_keep_the_last_good_version() {
        let dir = temp_dir("reload");
        write(&dir, "mine.yaml", GOOD);
        write(&dir, "notes.txt", "not a dashboard");
        write(&dir, "node.yaml", "id: node\ntitle: My node\nrows:\n  - panels:\n      - {title: Up, type: stat, expr: up}\n");
        assert!(check_dir(&dir).is_empty(), "{:?}", check_dir(&dir));
        let mut loader = Loader {
            dir: Some(dir.clone()),
            builtins: builtin().0,
            builtin_errors: Vec::new(),
            last_good: BTreeMap::new(),
            seen: None,
        };
        let c = loader.reload_if_changed().unwrap();
        assert!(c.errors.is_empty());
        let node = c
            .dashboards
            .iter()
            .find(|d| d.dashboard.id == "node")
            .unwrap();
        assert_eq!(
            node.dashboard.title, "My node",
            "a user file replaces the built-in"
        );
        assert!(loader.reload_if_changed().is_none(), "nothing changed");

        // break it: the error names the file, the last good version stays
        write(
            &dir,
            "mine.yaml",
            "title: Mine\nrows:\n  - panels:\n      - {title: Up, type: gauge, expr: up}\n",
        );
        let c = loader.reload_if_changed().unwrap();
        let shown: Vec<String> = c.errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].contains("mine.yaml:4:"), "{shown:?}");
        assert!(shown[0].contains("unknown variant `gauge`"), "{shown:?}");
        assert!(c.dashboards.iter().any(|d| d.dashboard.id == "mine"));
        assert_eq!(check_dir(&dir).len(), 1);

        // two files, one id
        write(&dir, "mine.yaml", GOOD);
        write(&dir, "other.yaml", "id: mine\ntitle: Again\nrows:\n  - panels:\n      - {title: Up, type: stat, expr: up}\n");
        let e = check_dir(&dir);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].file.ends_with("other.yaml") && e[0].message.contains("already the id"),
            "{e:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(check_dir(&dir)[0]
            .message
            .contains("cannot read the dashboards directory"));
    }
}
