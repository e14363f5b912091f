//! Alertmanager semantics: routes, groups, inhibition, silences, notification log.
