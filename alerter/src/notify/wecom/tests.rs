//! WeCom against a fake robot: markdown and text bodies, mentions, size limits with CJK,
//! answer classification.

use super::*;
use crate::notify::testing::{
    alert, notification, notifier, one_alert, receiver, robot_notifier, FakeRobot, Script,
};
use crate::notify::{Delivery, Notifier, Outcome};

const KEY: &str = "k3y-0123456789";

fn config(robot: &FakeRobot, extra: &str) -> crate::notify::ReceiverConfig {
    receiver(&format!(
        "name: team\nwecom_configs:\n  - url: {}\n{extra}",
        robot.wecom_url(KEY)
    ))
}

/// The fake robot, the notifier and the integration of receiver `team`, whose one WeCom
/// config has `extra` YAML lines.
async fn setup(extra: &str, max_attempts: u32) -> (FakeRobot, Arc<Notifier>, Arc<Delivery>) {
    robot_notifier(KEY, max_attempts, |robot| config(robot, extra)).await
}

#[tokio::test]
async fn markdown_messages_mention_users_in_the_content() {
    let (robot, _, d) = setup("    mentioned_list: [zhangsan]\n", 3).await;
    let alerts = vec![alert(
        "HighLatency",
        &[("wecom_mentioned_list", "lisi,zhangsan")],
        "p99 延迟 2.5s",
    )];
    d.deliver(&notification("team", "HighLatency", alerts))
        .await
        .unwrap();
    let accepted = robot.accepted();
    assert_eq!(accepted.len(), 1);
    let body = &accepted[0].1;
    assert_eq!(body["msgtype"], "markdown");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(content.contains("HighLatency") && content.contains("p99 延迟 2.5s"));
    assert!(content.ends_with("<@zhangsan> <@lisi>"), "{content}");
    assert!(content.contains("http://lookout.example:9800/"));
}

#[tokio::test]
async fn text_messages_carry_mention_lists_and_split_under_2048_bytes() {
    let extra = "    msg_type: text\n    mentioned_list: ['@all']\n    mentioned_mobile_list: ['13800000000']\n";
    let (robot, _, d) = setup(extra, 3).await;
    let alerts: Vec<_> = (0..15)
        .map(|i| {
            alert(
                &format!("队列积压{i:02}"),
                &[("queue", &format!("订单队列-{i}"))],
                &"消息积压超过一万条，消费者处理缓慢。".repeat(3),
            )
        })
        .collect();
    let delivered = d
        .deliver(&notification("team", "Queue", alerts.clone()))
        .await
        .unwrap();
    let accepted = robot.accepted();
    assert!(accepted.len() > 1);
    assert_eq!(delivered.messages, accepted.len());
    for (i, (_, body)) in accepted.iter().enumerate() {
        assert_eq!(body["msgtype"], "text");
        let content = body["text"]["content"].as_str().unwrap();
        assert!(content.len() <= 2048, "{}", content.len());
        let mentions = &body["text"]["mentioned_list"];
        if i == 0 {
            assert_eq!(mentions, &serde_json::json!(["@all"]));
            assert_eq!(
                body["text"]["mentioned_mobile_list"],
                serde_json::json!(["13800000000"])
            );
        } else {
            assert_eq!(
                mentions,
                &serde_json::json!([]),
                "one ping per notification"
            );
        }
    }
    robot.assert_each_alert_in_one_message(&alerts, |b| b["text"]["content"].as_str().unwrap());
}

#[tokio::test]
async fn markdown_stays_under_4096_bytes() {
    let (robot, _, d) = setup("", 3).await;
    let alerts: Vec<_> = (0..30)
        .map(|i| {
            alert(
                &format!("实例宕机{i:02}"),
                &[],
                "实例无法访问，健康检查连续失败。",
            )
        })
        .collect();
    d.deliver(&notification("team", "Down", alerts))
        .await
        .unwrap();
    let accepted = robot.accepted();
    assert!(accepted.len() > 1);
    assert!(accepted
        .iter()
        .all(|(_, b)| b["markdown"]["content"].as_str().unwrap().len() <= 4096));
    assert_eq!(robot.answers().iter().filter(|c| **c != 0).count(), 0);
}

#[tokio::test]
async fn rate_limited_45009_is_retried_invalid_key_93000_is_not() {
    let (robot, n, d) = setup("", 3).await;
    robot.state.lock().script = [Script::Errcode(45009, "api freq out of limit")].into();
    d.deliver(&one_alert("team")).await.unwrap();
    let attempts = n.attempts(None, 10);
    assert_eq!(
        attempts.iter().rev().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![Outcome::Retrying, Outcome::Success]
    );
    assert_eq!(attempts[1].errcode, Some(45009));

    let bad = receiver(&format!(
        "name: team\nwecom_configs: [{{ url: '{}' }}]",
        robot.wecom_url("wrong-key-42")
    ));
    let n = notifier(&[bad], 3);
    let d = n.integrations("team").unwrap().remove(0);
    let e = d.deliver(&one_alert("team")).await.unwrap_err();
    assert_eq!((e.kind, e.errcode), (FailureKind::Permanent, Some(93000)));
    assert_eq!(n.attempts(None, 10).len(), 1);
    assert!(!format!("{e:?}{d:?}").contains("wrong-key-42"));
}

#[test]
fn config_errors_name_their_fields() {
    let r = receiver(
        "name: x\nwecom_configs:\n  - url: not a url\n    mentioned_mobile_list: ['x1']\n    rate_limit: { messages: 0, per: 0s }\n",
    );
    let p = "alerting.receivers[0].wecom_configs[0]";
    let errors = r.wecom_configs[0].validate(p);
    for want in [
        format!("{p}.url: must be an http(s) URL"),
        format!("{p}.mentioned_mobile_list[0]: \"x1\" is not a mobile number (digits, '+' and '-')"),
        format!("{p}.mentioned_mobile_list: WeCom markdown messages cannot mention mobiles; use msg_type: text"),
        format!("{p}.rate_limit.messages: must be at least 1"),
        format!("{p}.rate_limit.per: must be longer than 0s"),
    ] {
        assert!(errors.contains(&want), "{want} not in {errors:?}");
    }
    assert_eq!(errors.len(), 5, "{errors:?}");
}

#[test]
fn message_type_language_and_templates_separate_batch_classes_mentions_do_not() {
    let ctx = BuildContext::new(crate::template::Language::En);
    let class = |extra: &str| {
        let r = receiver(&format!(
            "name: x\nwecom_configs: [{{ url: 'http://h/cgi-bin/webhook/send?key={KEY}'{extra} }}]"
        ));
        WeCom::new(r.wecom_configs[0].clone(), &ctx)
            .batch_class()
            .to_string()
    };
    let base = class("");
    assert_eq!(
        class(", mentioned_list: [u], mentioned_list_label: owner"),
        base
    );
    for differs in [", msg_type: text", ", language: zh", ", text: 'custom'"] {
        assert_ne!(class(differs), base, "{differs}");
    }
    assert!(!base.contains(KEY));
}
