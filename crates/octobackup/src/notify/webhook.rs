//! Webhook bodies: octobackup's JSON, a Teams Adaptive Card, a Slack Block Kit message; and the
//! POST. The URL is a secret (Teams and Slack put the token in it): errors name the target by
//! number and host only, never the URL.

use super::{Event, Format, Status};
use crate::secret::Secret;
use serde_json::{Value, json};
use std::time::Duration;

pub fn body(format: Format, event: &Event) -> Value {
    match format {
        Format::Json => serde_json::to_value(event).expect("event serializes"),
        Format::Teams => teams(event),
        Format::Slack => slack(event),
    }
}

/// A message with one Adaptive Card attachment: the shape Teams incoming webhooks and Workflows
/// ("Post to a channel when a webhook request is received") accept (Microsoft Learn, "Send
/// Adaptive Cards using an Incoming Webhook"). Version 1.4, the highest Teams renders everywhere.
fn teams(event: &Event) -> Value {
    let color = if event.status == Status::Success {
        "Good"
    } else {
        "Attention"
    };
    let facts: Vec<Value> = event
        .facts()
        .into_iter()
        .map(|(k, v)| json!({"title": k, "value": v}))
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "text": event.title(), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(f) = &event.failure {
        body.push(json!({"type": "TextBlock", "text": f, "wrap": true}));
    }
    if let Some(f) = &event.fix {
        body.push(json!({"type": "TextBlock", "text": format!("Fix: {f}"), "weight": "Bolder", "wrap": true}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            }
        }]
    })
}

/// Slack's `&`, `<` and `>` are markup in mrkdwn (`<!channel>` would ping everyone).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(max - 1).collect();
        c.push('…');
        c
    }
}

/// `text` (the notification's fallback) with Block Kit blocks: a header (plain text, at most 150
/// characters), the facts as section fields (at most 10 per section) and the failure and its fix
/// as mrkdwn sections (at most 3000 characters each), within the limits Slack's Block Kit reference gives.
fn slack(event: &Event) -> Value {
    let title = event.title();
    let fields: Vec<Value> = event
        .facts()
        .into_iter()
        .map(|(k, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{k}*\n{}", slack_escape(&v)), 2000)}))
        .collect();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&title, 150)}
    })];
    for chunk in fields.chunks(10) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    if let Some(f) = &event.failure {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&format!("*Failure*\n{}", slack_escape(f)), 3000)}}));
    }
    if let Some(f) = &event.fix {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&format!("*Fix*\n{}", slack_escape(f)), 3000)}}));
    }
    json!({"text": title, "blocks": blocks})
}

pub async fn send(
    format: Format,
    url: &Secret,
    event: &Event,
    timeout: Duration,
) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url.expose())
        .map_err(|_| "the webhook URL is not a valid URL".to_string())?;
    let host = parsed.host_str().unwrap_or("?").to_string();
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.without_url().to_string())?;
    let resp = client
        .post(parsed)
        .json(&body(format, event))
        .send()
        .await
        .map_err(|e| format!("{host}: {}", describe(e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    // The answer may quote the request (and so the token in the URL): cut it out.
    let text = redact(&text, url.expose());
    Err(format!(
        "{host} answered HTTP {}: {}",
        status.as_u16(),
        clip(text.trim(), 200)
    ))
}

fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    // The innermost cause says why (connection refused, a certificate refused); the URL is left
    // out at every level.
    let e = e.without_url();
    format!("{kind}: {}", crate::error::innermost(&e))
}

fn redact(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "***");
    if let Ok(u) = reqwest::Url::parse(url) {
        let path = u.path();
        if path.len() > 1 {
            out = out.replace(path, "/***");
        }
        if let Some(q) = u.query() {
            out = out.replace(q, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            event: "backup",
            copy: None,
            instance: "OctopusServer".into(),
            status: Status::Failed,
            exit_code: 4,
            recovery: false,
            set_id: Some("20260101T000000Z".into()),
            snapshot_id: None,
            host: "backup01".into(),
            nodes: vec!["OCTO01".into(), "OCTO02".into()],
            drained_nodes: vec!["OCTO02".into()],
            started: chrono::Utc::now(),
            finished: chrono::Utc::now(),
            window_seconds: None,
            database_bytes: None,
            folder_bytes: None,
            new_bytes: None,
            steps: vec![],
            drill: None,
            failure: Some("login failed for <sa> & co".into()),
            fix: Some("check the login".into()),
        }
    }

    #[test]
    fn teams_is_an_adaptive_card_in_a_message() {
        let b = body(Format::Teams, &event());
        assert_eq!(b["type"], "message");
        let a = &b["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        let facts = a["content"]["body"][1]["facts"].as_array().unwrap();
        assert!(
            facts
                .iter()
                .any(|f| f["title"] == "Drained nodes" && f["value"] == "OCTO02")
        );
    }

    #[test]
    fn slack_escapes_markup_and_keeps_limits() {
        let b = body(Format::Slack, &event());
        assert!(b["text"].as_str().unwrap().contains("FAILED"));
        assert_eq!(b["blocks"][0]["type"], "header");
        let all = b.to_string();
        assert!(all.contains("&lt;sa&gt; &amp; co"), "{all}");
        for block in b["blocks"].as_array().unwrap() {
            if let Some(f) = block["fields"].as_array() {
                assert!(f.len() <= 10);
            }
        }
    }

    #[test]
    fn redacts_the_token_from_answers() {
        let url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let r = redact("invalid_token for /services/T000/B000/XXXXSECRET", url);
        assert!(!r.contains("XXXXSECRET"), "{r}");
    }
}
