//! The route tree, matched as Alertmanager's `Route.Match`: depth first; a route whose
//! matchers match takes the alert to the first matching child (every matching child while
//! children set `continue`), and is itself the match when no child matched.

use std::time::Duration;

use super::matchers::{all_match, matchers_string, Matcher};
use crate::model::LabelSet;

/// Which labels split a route's alerts into aggregation groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// `['...']`: every label.
    All,
    Labels(Vec<String>),
}

/// One node of the route tree, with inherited settings already filled in.
#[derive(Clone, Debug)]
pub struct Route {
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
    pub routes: Vec<Route>,
    /// Alertmanager's `Route.ID()`: the parent's id, `/`, the matchers, `/`, the index
    /// among siblings; unique in the tree, part of every group key.
    pub id: String,
}

impl Route {
    /// The routes an alert with `labels` goes to (empty when the root does not match).
    pub fn match_labels<'a>(&'a self, labels: &LabelSet) -> Vec<&'a Route> {
        let mut out = Vec::new();
        self.match_into(labels, &mut out);
        out
    }

    fn match_into<'a>(&'a self, labels: &LabelSet, out: &mut Vec<&'a Route>) -> bool {
        if !all_match(&self.matchers, labels) {
            return false;
        }
        let before = out.len();
        for child in &self.routes {
            if child.match_into(labels, out) && !child.continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(self);
        }
        true
    }

    /// The group labels of an alert on this route.
    pub fn group_labels(&self, labels: &LabelSet) -> LabelSet {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }

    /// Every route of the tree, depth first.
    pub fn walk(&self) -> Vec<&Route> {
        let mut out = vec![self];
        for child in &self.routes {
            out.extend(child.walk());
        }
        out
    }

    /// Sets the ids of this route and its children (the root's parent is `None`).
    pub(crate) fn assign_ids(&mut self, parent: Option<(&str, usize)>) {
        let own = matchers_string(&self.matchers);
        self.id = match parent {
            None => own,
            Some((pid, index)) => format!("{pid}/{own}/{index}"),
        };
        let id = self.id.clone();
        for (i, child) in self.routes.iter_mut().enumerate() {
            child.assign_ids(Some((&id, i)));
        }
    }
}

/// Alertmanager's group key: `<route id>:<group labels>`, labels as `{a="b", c="d"}`.
pub fn group_key(route_id: &str, group_labels: &LabelSet) -> String {
    let parts: Vec<String> = group_labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{route_id}:{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::matchers::parse_matchers;
    use crate::model::label_set;

    fn route(receiver: &str, matchers: &str, cont: bool, routes: Vec<Route>) -> Route {
        Route {
            receiver: receiver.into(),
            group_by: GroupBy::Labels(vec!["alertname".into()]),
            group_wait: Duration::from_secs(1),
            group_interval: Duration::from_secs(2),
            repeat_interval: Duration::from_secs(10),
            matchers: parse_matchers(matchers).unwrap(),
            continue_matching: cont,
            routes,
            id: String::new(),
        }
    }

    #[test]
    fn first_match_wins_unless_continue_and_parent_catches_the_rest() {
        let mut root = route(
            "default",
            "",
            false,
            vec![
                route("db", "team=db", true, vec![]),
                route("db-crit", "team=db,severity=critical", false, vec![]),
                route("db-late", "team=db", false, vec![]),
                route(
                    "web",
                    "team=web",
                    false,
                    vec![route("web-page", "page=yes", false, vec![])],
                ),
            ],
        );
        root.assign_ids(None);
        let names = |l: &LabelSet| -> Vec<String> {
            root.match_labels(l)
                .iter()
                .map(|r| r.receiver.clone())
                .collect()
        };
        assert_eq!(
            names(&label_set(&[("team", "db"), ("severity", "critical")])),
            ["db", "db-crit"]
        );
        assert_eq!(names(&label_set(&[("team", "db")])), ["db", "db-late"]);
        assert_eq!(names(&label_set(&[("team", "web")])), ["web"]);
        assert_eq!(
            names(&label_set(&[("team", "web"), ("page", "yes")])),
            ["web-page"]
        );
        assert_eq!(names(&label_set(&[("team", "x")])), ["default"]);
        assert_eq!(
            root.routes[3].routes[0].id,
            r#"{}/{team="web"}/3/{page="yes"}/0"#
        );
        assert_eq!(
            group_key(&root.id, &label_set(&[("alertname", "A"), ("b", "c")])),
            r#"{}:{alertname="A", b="c"}"#
        );
    }
}
