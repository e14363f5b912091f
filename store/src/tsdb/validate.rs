//! Per-series checks against [`Limits`] and Prometheus's naming rules, applied at append
//! before anything touches the head or the WAL.

use crate::config::Limits;
use crate::contract::RejectReason;
use crate::model::{Labels, METRIC_NAME_LABEL};

fn is_valid_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_valid_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Why a whole series is rejected, with a message naming the series and the limit.
pub fn check_series(labels: &Labels, limits: &Limits) -> Result<(), (RejectReason, String)> {
    let Some(name) = labels.metric_name() else {
        return Err((
            RejectReason::MissingMetricName,
            format!("series {labels} has no metric name (__name__ label)"),
        ));
    };
    if !is_valid_metric_name(name) {
        return Err((
            RejectReason::InvalidLabelName,
            format!(
                "series {labels}: metric name {name:?} does not match [a-zA-Z_:][a-zA-Z0-9_:]*"
            ),
        ));
    }
    if labels.len() > limits.max_labels_per_series {
        return Err((
            RejectReason::TooManyLabels,
            format!(
                "series {labels} has {} labels, more than max_labels_per_series ({})",
                labels.len(),
                limits.max_labels_per_series
            ),
        ));
    }
    for l in labels {
        if l.name != METRIC_NAME_LABEL && !is_valid_label_name(&l.name) {
            return Err((
                RejectReason::InvalidLabelName,
                format!(
                    "series {labels}: label name {:?} does not match [a-zA-Z_][a-zA-Z0-9_]*",
                    l.name
                ),
            ));
        }
        if l.name.len() > limits.max_label_name_length {
            return Err((
                RejectReason::LabelNameTooLong,
                format!(
                    "series {labels}: label name {:?} is {} bytes, longer than max_label_name_length ({})",
                    l.name,
                    l.name.len(),
                    limits.max_label_name_length
                ),
            ));
        }
        if l.value.len() > limits.max_label_value_length {
            return Err((
                RejectReason::LabelValueTooLong,
                format!(
                    "series {name}: value of label {:?} is {} bytes, longer than max_label_value_length ({})",
                    l.name,
                    l.value.len(),
                    limits.max_label_value_length
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)], limits: &Limits) -> Option<RejectReason> {
        check_series(&Labels::from_pairs(pairs.iter().copied()), limits)
            .err()
            .map(|(r, _)| r)
    }

    #[test]
    fn names_and_limits() {
        let l = Limits::default();
        assert_eq!(
            check(&[("__name__", "ok:metric_1"), ("job", "x")], &l),
            None
        );
        assert_eq!(
            check(&[("job", "x")], &l),
            Some(RejectReason::MissingMetricName)
        );
        assert_eq!(
            check(&[("__name__", "1bad")], &l),
            Some(RejectReason::InvalidLabelName)
        );
        assert_eq!(
            check(&[("__name__", "a"), ("bad-name", "x")], &l),
            Some(RejectReason::InvalidLabelName)
        );
        assert_eq!(
            check(&[("__name__", "a"), ("a:b", "x")], &l),
            Some(RejectReason::InvalidLabelName)
        );
        let tight = Limits {
            max_labels_per_series: 2,
            max_label_name_length: 8,
            max_label_value_length: 3,
            ..l
        };
        assert_eq!(
            check(&[("__name__", "a"), ("b", "1"), ("c", "2")], &tight),
            Some(RejectReason::TooManyLabels)
        );
        assert_eq!(
            check(&[("__name__", "a"), ("very_long_name", "1")], &tight),
            Some(RejectReason::LabelNameTooLong)
        );
        assert_eq!(
            check(&[("__name__", "a"), ("b", "long")], &tight),
            Some(RejectReason::LabelValueTooLong)
        );
        let (_, msg) = check_series(
            &Labels::from_pairs([("__name__", "a"), ("b", "long")]),
            &tight,
        )
        .unwrap_err();
        assert!(
            msg.contains("max_label_value_length (3)") && msg.contains("\"b\""),
            "{msg}"
        );
    }
}
