//! DingTalk against a fake robot: signing, keyword, mentions, answer classification,
//! retries, splitting, digests under the rate limit, secrets kept out of errors.

use std::time::Duration;

use super::*;
use crate::notify::testing::{
    alert, notification, notifier, one_alert, receiver, robot_notifier, FakeRobot, Script,
};
use crate::notify::{Attempt, Delivery, Notifier, Outcome};

const TOKEN: &str = "tok3n-abcdef";
const SECRET: &str = "SECsup3rs3cret";

fn config(robot: &FakeRobot, extra: &str) -> crate::notify::ReceiverConfig {
    receiver(&format!(
        "name: oncall\ndingtalk_configs:\n  - url: {}\n{extra}",
        robot.dingtalk_url(TOKEN)
    ))
}

/// The fake robot, the notifier and the integration of receiver `oncall`, whose one
/// DingTalk config has `extra` YAML lines.
async fn setup(extra: &str, max_attempts: u32) -> (FakeRobot, Arc<Notifier>, Arc<Delivery>) {
    robot_notifier(TOKEN, max_attempts, |robot| config(robot, extra)).await
}

fn outcomes(attempts: &[Attempt]) -> Vec<Outcome> {
    attempts.iter().rev().map(|a| a.outcome).collect()
}

#[test]
fn signature_matches_dingtalks_reference_algorithm() {
    // base64(HMAC-SHA256(key=secret, "1700000000000\nSECtest")), URL-encoded
    let s = sign("SECtest", 1_700_000_000_000);
    assert!(!s.contains('+') && !s.contains('/') && !s.contains('='));
    let decoded = percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .unwrap()
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"SECtest").unwrap();
    mac.update(b"1700000000000\nSECtest");
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(decoded, want);
}

#[tokio::test]
async fn a_signed_message_with_keyword_and_mentions_is_delivered() {
    let (robot, n, d) = setup(&format!(
                "    secret: {SECRET}\n    keyword: 告警\n    at_mobiles: ['13800000000']\n    at_user_ids: [u1]\n"
            ), 3).await;
    {
        let mut s = robot.state.lock();
        s.secret = Some(SECRET.into());
        s.keyword = Some("告警".into());
    }
    assert_eq!(
        (d.name(), d.receiver(), d.kind()),
        ("dingtalk[0]", "oncall", "dingtalk")
    );
    let alerts = vec![alert(
        "DiskFull",
        &[
            ("at_mobiles", "13900000000, 13800000000"),
            ("at_user_ids", "u2"),
        ],
        "disk / is 95% full",
    )];
    let delivered = d
        .deliver(&notification("oncall", "DiskFull", alerts))
        .await
        .unwrap();
    assert_eq!(delivered.messages, 1);
    let accepted = robot.accepted();
    assert_eq!(accepted.len(), 1);
    let (q, body) = &accepted[0];
    assert!(q.contains_key("timestamp") && q.contains_key("sign"));
    let title = body["markdown"]["title"].as_str().unwrap();
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(title.starts_with("告警 "), "{title}");
    assert!(text.starts_with("告警\n\n"), "{text}");
    assert!(text.contains("DiskFull") && text.contains("disk / is 95% full"));
    assert!(text.contains("http://lookout.example:9800/"));
    // config first, then labels, deduplicated; every mention also in the text
    assert_eq!(
        body["at"]["atMobiles"],
        serde_json::json!(["13800000000", "13900000000"])
    );
    assert_eq!(body["at"]["atUserIds"], serde_json::json!(["u1", "u2"]));
    for m in ["@13800000000", "@13900000000", "@u1", "@u2"] {
        assert!(text.contains(m), "{m} missing from {text}");
    }
    let attempts = n.attempts(Some("oncall"), 10);
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!(
        (
            a.outcome,
            a.attempt,
            a.status_code,
            a.messages,
            a.alerts,
            a.digest
        ),
        (Outcome::Success, 1, Some(200), 1, 1, false)
    );
    assert_eq!(a.integration, "dingtalk[0]");
    assert_eq!((a.errcode, a.errmsg.as_deref()), (Some(0), None));
}

#[tokio::test]
async fn a_bad_signature_is_permanent_one_attempt() {
    let (robot, n, d) = setup("    secret: SECwrong\n", 5).await;
    robot.state.lock().secret = Some(SECRET.into());
    let e = d.deliver(&one_alert("oncall")).await.unwrap_err();
    assert_eq!(
        (e.kind, e.errcode, e.status),
        (FailureKind::Permanent, Some(310000), Some(200))
    );
    assert_eq!(robot.answers(), vec![310000]);
    let attempts = n.attempts(None, 10);
    assert_eq!(outcomes(&attempts), vec![Outcome::Failed]);
    assert_eq!(attempts[0].errcode, Some(310000));
    assert_eq!(attempts[0].errmsg.as_deref(), Some("sign not match"));
}

#[tokio::test]
async fn a_missing_keyword_is_permanent() {
    let (robot, _, d) = setup("", 5).await;
    robot.state.lock().keyword = Some("LOOKOUT-KW".into());
    let e = d.deliver(&one_alert("oncall")).await.unwrap_err();
    assert_eq!((e.kind, e.errcode), (FailureKind::Permanent, Some(310000)));
    assert_eq!(robot.answers().len(), 1, "no retry storm");
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered_once() {
    let (robot, n, d) = setup("", 5).await;
    robot.state.lock().script = [Script::Http(500), Script::Http(503)].into();
    d.deliver(&one_alert("oncall")).await.unwrap();
    assert_eq!(robot.accepted().len(), 1);
    let attempts = n.attempts(None, 10);
    assert_eq!(
        outcomes(&attempts),
        vec![Outcome::Retrying, Outcome::Retrying, Outcome::Success]
    );
    assert_eq!(
        attempts.iter().rev().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(attempts[2].status_code, Some(500));
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit() {
    let (robot, n, d) = setup("", 3).await;
    robot.state.lock().script = std::iter::repeat_n(Script::Http(502), 10).collect();
    let e = d.deliver(&one_alert("oncall")).await.unwrap_err();
    assert_eq!((e.kind, e.status), (FailureKind::Transient, Some(502)));
    assert_eq!(robot.answers().len(), 3);
    assert_eq!(
        outcomes(&n.attempts(None, 10)),
        vec![Outcome::Retrying, Outcome::Retrying, Outcome::Failed]
    );
}

#[tokio::test]
async fn other_errcodes_are_permanent_and_quota_and_too_fast_too() {
    for code in [90030, 130101, 300001, 400013] {
        let (robot, _, d) = setup("", 5).await;
        robot.state.lock().script = [Script::Errcode(code, "nope")].into();
        let e = d.deliver(&one_alert("oncall")).await.unwrap_err();
        assert_eq!((e.kind, e.errcode), (FailureKind::Permanent, Some(code)));
        assert_eq!(robot.answers().len(), 1);
    }
}

/// Where a DingTalk body holds the message text.
fn markdown_text(body: &serde_json::Value) -> &str {
    body["markdown"]["text"].as_str().unwrap()
}

#[tokio::test]
async fn long_messages_are_split_at_alert_boundaries_under_the_limit() {
    let (robot, _, d) = setup("    max_message_bytes: 2000\n", 3).await;
    robot.state.lock().max_body = Some(2000);
    let alerts: Vec<_> = (0..12)
        .map(|i| {
            alert(
                &format!("磁盘告警{i:02}"),
                &[("instance", &format!("主机-{i}"))],
                &"磁盘空间不足，请尽快清理。".repeat(8),
            )
        })
        .collect();
    let delivered = d
        .deliver(&notification("oncall", "Disk", alerts.clone()))
        .await
        .unwrap();
    let accepted = robot.accepted();
    assert!(accepted.len() > 1);
    assert_eq!(delivered.messages, accepted.len());
    let total = accepted.len();
    for (i, (_, body)) in accepted.iter().enumerate() {
        assert!(body.to_string().len() <= 2000, "{}", body.to_string().len());
        let title = body["markdown"]["title"].as_str().unwrap();
        assert!(title.ends_with(&format!("({}/{total})", i + 1)), "{title}");
    }
    robot.assert_each_alert_in_one_message(&alerts, markdown_text);
}

#[tokio::test]
async fn too_long_for_the_platform_splits_smaller_once() {
    let (robot, n, d) = setup("    max_message_bytes: 6000\n", 3).await;
    robot.state.lock().max_body = Some(3000);
    let alerts: Vec<_> = (0..8)
        .map(|i| alert(&format!("Alert{i}"), &[], &"x".repeat(300)))
        .collect();
    let delivered = d
        .deliver(&notification("oncall", "G", alerts.clone()))
        .await
        .unwrap();
    let answers = robot.answers();
    assert_eq!(answers[0], TOO_LONG);
    assert!(answers[1..].iter().all(|c| *c == 0), "{answers:?}");
    assert_eq!(delivered.messages, robot.accepted().len());
    let attempts = n.attempts(None, 10);
    assert_eq!(
        outcomes(&attempts),
        vec![Outcome::Retrying, Outcome::Success]
    );
    assert_eq!(attempts[1].errcode, Some(TOO_LONG));
    robot.assert_each_alert_in_one_message(&alerts, markdown_text);
}

#[tokio::test]
async fn over_the_rate_limit_notifications_wait_and_go_out_as_one_digest() {
    let (robot, n, d) = setup("    rate_limit: { messages: 1, per: 3s }\n", 3).await;
    let start = std::time::Instant::now();
    let first = d
        .deliver(&notification(
            "oncall",
            "G0",
            vec![alert("G0", &[], "zero")],
        ))
        .await
        .unwrap();
    assert_eq!(first.messages, 1);
    let sends = (1..4).map(|i| {
        let d = Arc::clone(&d);
        tokio::spawn(async move {
            let g = format!("G{i}");
            d.deliver(&notification("oncall", &g, vec![alert(&g, &[], "later")]))
                .await
        })
    });
    let results = futures::future::join_all(sends).await;
    for r in results {
        r.unwrap().unwrap();
    }
    assert!(start.elapsed() >= Duration::from_millis(2900));
    let accepted = robot.accepted();
    assert_eq!(accepted.len(), 2, "one alone, then one digest");
    let digest = accepted[1].1["markdown"]["text"].as_str().unwrap();
    for g in ["G1", "G2", "G3"] {
        assert!(digest.contains(g), "{g} missing from the digest");
    }
    let attempts = n.attempts(None, 10);
    assert_eq!(attempts.len(), 4);
    assert_eq!(attempts.iter().filter(|a| a.digest).count(), 3);
    assert!(attempts.iter().all(|a| a.outcome == Outcome::Success));
}

#[tokio::test]
async fn a_robot_shared_by_two_receivers_has_one_window() {
    let robot = FakeRobot::start(TOKEN).await;
    let url = robot.dingtalk_url(TOKEN);
    let receivers = [
        receiver(&format!(
            "name: a\ndingtalk_configs: [{{ url: '{url}', rate_limit: {{ messages: 1, per: 3s }} }}]"
        )),
        receiver(&format!("name: b\ndingtalk_configs: [{{ url: '{url}' }}]")),
    ];
    let n = notifier(&receivers, 3);
    let a = n.integrations("a").unwrap().remove(0);
    let b = n.integrations("b").unwrap().remove(0);
    a.deliver(&notification("a", "A", vec![alert("A", &[], "s")]))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    b.deliver(&notification("b", "B", vec![alert("B", &[], "s")]))
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(2500),
        "b waited for a's slot"
    );
    // and a reload keeps the window
    n.reconfigure(&receivers, crate::template::Language::Zh)
        .unwrap();
    let a = n.integrations("a").unwrap().remove(0);
    let start = std::time::Instant::now();
    a.deliver(&notification("a", "A", vec![alert("A", &[], "s")]))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(2500));
    assert_eq!(robot.accepted().len(), 3);
}

#[tokio::test]
async fn secrets_stay_out_of_errors_debug_and_attempts() {
    // nothing listens on this port: a connection error, which reqwest would print with
    // the URL (and so the token)
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let r = receiver(&format!(
        "name: oncall\ndingtalk_configs:\n  - url: http://127.0.0.1:{port}/robot/send?access_token={TOKEN}\n    secret: {SECRET}\n"
    ));
    let n = notifier(std::slice::from_ref(&r), 2);
    let d = n.integrations("oncall").unwrap().remove(0);
    let e = d.deliver(&one_alert("oncall")).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Transient);
    let shown = [
        e.to_string(),
        format!("{e:?}"),
        format!("{d:?}"),
        format!("{n:?}"),
        format!("{r:?}"),
        serde_json::to_string(&n.attempts(None, 10)).unwrap(),
        format!(
            "{:?}",
            DingTalk::new(
                r.dingtalk_configs[0].clone(),
                &BuildContext::new(crate::template::Language::En)
            )
        ),
    ];
    for s in shown {
        assert!(
            !s.contains(TOKEN) && !s.contains(SECRET),
            "secret shown: {s}"
        );
    }
}

#[test]
fn config_errors_name_their_fields() {
    let r = receiver(
        "name: x\ndingtalk_configs:\n  - url: ftp://h/x\n    secret: ''\n    at_mobiles: ['138-0000', 'abc']\n    max_message_bytes: 30000\n    rate_limit: { messages: 30, per: 1m }\n    text: '{{ broken'\n",
    );
    let errors = r.dingtalk_configs[0].validate("alerting.receivers[0].dingtalk_configs[0]");
    let p = "alerting.receivers[0].dingtalk_configs[0]";
    for want in [
        format!("{p}.url: must be an http(s) URL"),
        format!("{p}.secret: must not be empty when set"),
        format!("{p}.at_mobiles[1]: \"abc\" is not a mobile number (digits, '+' and '-')"),
    ] {
        assert!(errors.contains(&want), "{want} not in {errors:?}");
    }
    for prefix in [
        format!("{p}.max_message_bytes:"),
        format!("{p}.rate_limit:"),
        format!("{p}.text:"),
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(&prefix)),
            "{prefix} not in {errors:?}"
        );
    }
    assert_eq!(errors.len(), 6, "{errors:?}");
    let ok = receiver("name: x\ndingtalk_configs: [{ url: 'https://oapi.dingtalk.com/robot/send?access_token=t', secret: SECx }]");
    assert!(ok.dingtalk_configs[0].validate("p").is_empty());
}

#[tokio::test]
async fn a_group_flushed_again_while_waiting_goes_out_once_in_its_newer_state() {
    let (robot, n, d) = setup("    rate_limit: { messages: 1, per: 3s }\n", 3).await;
    d.deliver(&notification(
        "oncall",
        "G0",
        vec![alert("G0", &[], "zero")],
    ))
    .await
    .unwrap();
    let older = notification(
        "oncall",
        "G1",
        vec![alert("OlderOnly", &[], "summary-of-older")],
    );
    let mut newer = notification(
        "oncall",
        "G1",
        vec![
            alert("OlderOnly", &[], "summary-of-older"),
            alert("NewlyFiring", &[], "new"),
        ],
    );
    newer.now_ms += 1_000;
    let (d1, d2) = (Arc::clone(&d), Arc::clone(&d));
    let a = tokio::spawn(async move { d1.deliver(&older).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = tokio::spawn(async move { d2.deliver(&newer).await });
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    let accepted = robot.accepted();
    assert_eq!(accepted.len(), 2);
    let text = accepted[1].1["markdown"]["text"].as_str().unwrap();
    assert!(text.contains("NewlyFiring"));
    assert_eq!(text.matches("summary-of-older").count(), 1, "{text}");
    // one group: not a digest
    assert!(n.attempts(None, 10).iter().all(|a| !a.digest));
}

#[test]
fn only_system_busy_is_retried_every_other_code_is_permanent() {
    use crate::notify::FailureKind;
    assert_eq!(super::classify(-1), FailureKind::Transient);
    for code in [130101, 90030, 310000, 300001, 460101] {
        assert_eq!(super::classify(code), FailureKind::Permanent, "{code}");
    }
}

/// An integration, the group it notifies and the alert's extra labels.
type Waiting = (
    Arc<Delivery>,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// Delivers a notification of group `G0` through `first` (taking the robot's one slot),
/// then each of `waiting` (integration, group, extra labels) 100 ms apart while that slot
/// is still taken, and waits for all of them.
async fn saturate_then_deliver(first: &Arc<Delivery>, waiting: Vec<Waiting>) {
    first
        .deliver(&notification(
            first.receiver(),
            "G0",
            vec![alert("G0", &[], "zero")],
        ))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (d, group, labels) in waiting {
        tasks.push(tokio::spawn(async move {
            let n = notification(d.receiver(), group, vec![alert(group, &labels, "s")]);
            d.deliver(&n).await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_digest_on_a_shared_robot_mentions_everyone_each_member_would() {
    let robot = FakeRobot::start(TOKEN).await;
    let url = robot.dingtalk_url(TOKEN);
    let receivers = [
        receiver(&format!(
            "name: a\ndingtalk_configs: [{{ url: '{url}', at_mobiles: ['13800000001'], rate_limit: {{ messages: 1, per: 3s }} }}]"
        )),
        receiver(&format!(
            "name: b\ndingtalk_configs: [{{ url: '{url}', at_mobiles: ['13800000002'], at_user_ids: [ub], is_at_all: true, at_user_ids_label: owner }}]"
        )),
    ];
    let n = notifier(&receivers, 3);
    let a = n.integrations("a").unwrap().remove(0);
    let b = n.integrations("b").unwrap().remove(0);
    saturate_then_deliver(
        &a,
        vec![
            (Arc::clone(&a), "G1", vec![]),
            (Arc::clone(&b), "G2", vec![("owner", "lbl-user")]),
        ],
    )
    .await;
    let accepted = robot.accepted();
    assert_eq!(accepted.len(), 2, "one alone, then one digest");
    let body = &accepted[1].1;
    let text = markdown_text(body);
    assert!(text.contains("G1") && text.contains("G2"), "{text}");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        strings(&body["at"]["atMobiles"]),
        vec!["13800000001", "13800000002"]
    );
    assert_eq!(strings(&body["at"]["atUserIds"]), vec!["ub", "lbl-user"]);
    assert_eq!(body["at"]["isAtAll"], true);
    for m in ["@13800000001", "@13800000002", "@ub", "@lbl-user"] {
        assert!(text.contains(m), "{m} missing from {text}");
    }
    let digested = n
        .attempts(None, 10)
        .into_iter()
        .filter(|a| a.digest)
        .count();
    assert_eq!(digested, 2);
}

#[tokio::test]
async fn members_that_would_render_differently_never_share_a_message() {
    let robot = FakeRobot::start(TOKEN).await;
    let url = robot.dingtalk_url(TOKEN);
    let receivers = [
        receiver(&format!(
            "name: a\ndingtalk_configs: [{{ url: '{url}', language: en, rate_limit: {{ messages: 1, per: 3s }} }}]"
        )),
        receiver(&format!(
            "name: b\ndingtalk_configs: [{{ url: '{url}', language: zh }}]"
        )),
    ];
    let n = notifier(&receivers, 3);
    let a = n.integrations("a").unwrap().remove(0);
    let b = n.integrations("b").unwrap().remove(0);
    let start = std::time::Instant::now();
    saturate_then_deliver(
        &a,
        vec![
            (Arc::clone(&a), "G1", vec![]),
            (Arc::clone(&b), "G2", vec![]),
            (Arc::clone(&a), "G3", vec![]),
        ],
    )
    .await;
    let texts: Vec<String> = robot
        .accepted()
        .iter()
        .map(|(_, body)| markdown_text(body).to_string())
        .collect();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    // a's two waiting groups merge; b's goes alone, in its own language, a slot later
    assert!(
        texts[1].contains("G1") && texts[1].contains("G3"),
        "{}",
        texts[1]
    );
    assert!(!texts[1].contains("G2") && texts[1].contains("FIRING"));
    assert!(
        texts[2].contains("G2") && !texts[2].contains("G1"),
        "{}",
        texts[2]
    );
    assert!(texts[2].contains("告警"), "{}", texts[2]);
    assert!(
        start.elapsed() >= Duration::from_millis(5900),
        "a slot each"
    );
}

#[test]
fn only_what_changes_the_rendering_separates_batch_classes() {
    let ctx = BuildContext::new(crate::template::Language::En);
    let class = |extra: &str| {
        let r = receiver(&format!(
            "name: x\ndingtalk_configs: [{{ url: 'http://h/robot/send?access_token={TOKEN}'{extra} }}]"
        ));
        DingTalk::new(r.dingtalk_configs[0].clone(), &ctx)
            .batch_class()
            .to_string()
    };
    let base = class("");
    // mentions, their labels, send_resolved and the rate limit do not change the text
    for same in [
        ", at_mobiles: ['138'], is_at_all: true",
        ", at_user_ids: [u], at_user_ids_label: owner, at_mobiles_label: m",
        ", send_resolved: false, rate_limit: { messages: 10, per: 1m }",
        ", language: en",
    ] {
        assert_eq!(class(same), base, "{same}");
    }
    for differs in [
        ", secret: SEC1234",
        ", keyword: 告警",
        ", language: zh",
        ", title: 'custom'",
        ", text: 'custom'",
        ", max_message_bytes: 5000",
    ] {
        assert_ne!(class(differs), base, "{differs}");
    }
    assert_ne!(class(", secret: SEC1234"), class(", secret: SEC5678"));
    assert!(!class(", secret: SEC1234").contains("SEC1234"));
}
