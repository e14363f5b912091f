//! What the chat robots (DingTalk, WeCom) share: posting one JSON message and reading the
//! platform's answer, which is success only for HTTP 200 with `errcode == 0`.

use serde::Deserialize;

use super::{ChatRobot, Delivered, FailureKind, NotifyError};
use crate::model::Notification;

/// The longest excerpt of an unexpected answer body kept in an error.
const EXCERPT: usize = 200;

#[derive(Deserialize)]
struct Answer {
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: String,
}

/// Posts `body` to `url` and reads the answer. `classify` says whether a non-zero errcode
/// is worth retrying. `secrets` (token, key, signing secret) are scrubbed from every
/// message that could quote them.
pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    classify: fn(i64) -> FailureKind,
    secrets: &[&str],
) -> Result<(), NotifyError> {
    let answer = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(NotifyError::from_http)?;
    let status = answer.status().as_u16();
    let text = answer.text().await.map_err(|e| {
        let mut err = NotifyError::from_http(e);
        err.status = Some(status);
        err
    })?;
    let mut result = read_answer(status, &text, classify);
    if let Err(e) = &mut result {
        e.message = scrub(&e.message, secrets);
    }
    result
}

/// Renders and posts every message of `notifications`, one request each, no retries and no
/// rate limiting (delivery adds those): [`super::Integration::send`] of a chat robot.
pub(crate) async fn send_all(
    robot: &dyn ChatRobot,
    notifications: &[Notification],
) -> Result<Delivered, NotifyError> {
    let messages = robot.messages(notifications)?;
    for m in &messages {
        robot.post(m).await?;
    }
    Ok(Delivered {
        messages: messages.len(),
    })
}

/// The outcome an answer (`status`, body `text`) stands for.
pub(crate) fn read_answer(
    status: u16,
    text: &str,
    classify: fn(i64) -> FailureKind,
) -> Result<(), NotifyError> {
    if status != 200 {
        let kind = if status >= 500 || status == 429 {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        };
        return Err(NotifyError {
            kind,
            status: Some(status),
            errcode: None,
            message: format!("HTTP {status}: {}", excerpt(text)),
        });
    }
    match serde_json::from_str::<Answer>(text) {
        Ok(Answer {
            errcode: Some(0), ..
        }) => Ok(()),
        Ok(Answer {
            errcode: Some(code),
            errmsg,
        }) => Err(NotifyError {
            kind: classify(code),
            status: Some(status),
            errcode: Some(code),
            message: errmsg,
        }),
        _ => Err(NotifyError {
            kind: FailureKind::Permanent,
            status: Some(status),
            errcode: None,
            message: format!("answer without an errcode: {}", excerpt(text)),
        }),
    }
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(EXCERPT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `message` with every (non-trivial) secret replaced by `<secret>`.
pub(crate) fn scrub(message: &str, secrets: &[&str]) -> String {
    let mut out = message.to_string();
    for s in secrets {
        if s.len() >= 4 {
            out = out.replace(s, "<secret>");
        }
    }
    out
}

/// The values of the URL's query parameters (tokens and keys), for [`scrub`].
pub(crate) fn query_secrets(url: &str) -> Vec<String> {
    reqwest::Url::parse(url)
        .map(|u| u.query_pairs().map(|(_, v)| v.into_owned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dingtalk(code: i64) -> FailureKind {
        if code == 130101 {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        }
    }

    #[test]
    fn only_http_200_with_errcode_zero_is_success() {
        assert!(read_answer(200, r#"{"errcode":0,"errmsg":"ok"}"#, dingtalk).is_ok());
        let e = read_answer(
            200,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#,
            dingtalk,
        )
        .unwrap_err();
        assert_eq!(
            (e.kind, e.errcode, e.message.as_str()),
            (FailureKind::Permanent, Some(310000), "sign not match")
        );
        let e =
            read_answer(200, r#"{"errcode":130101,"errmsg":"too fast"}"#, dingtalk).unwrap_err();
        assert_eq!(e.kind, FailureKind::Transient);
        let e = read_answer(200, "<html>ok</html>", dingtalk).unwrap_err();
        assert_eq!((e.kind, e.errcode), (FailureKind::Permanent, None));
        let e = read_answer(201, r#"{"errcode":0}"#, dingtalk).unwrap_err();
        assert_eq!(e.kind, FailureKind::Permanent);
    }

    #[test]
    fn server_errors_and_429_are_transient_other_4xx_permanent() {
        for (status, kind) in [
            (500, FailureKind::Transient),
            (503, FailureKind::Transient),
            (429, FailureKind::Transient),
            (404, FailureKind::Permanent),
            (403, FailureKind::Permanent),
        ] {
            let e = read_answer(status, "nope", dingtalk).unwrap_err();
            assert_eq!((e.kind, e.status), (kind, Some(status)));
        }
    }

    #[test]
    fn secrets_are_scrubbed() {
        let secrets = query_secrets("http://h/robot/send?access_token=abcdef123");
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_eq!(
            scrub("token abcdef123 is not exist", &refs),
            "token <secret> is not exist"
        );
    }
}
