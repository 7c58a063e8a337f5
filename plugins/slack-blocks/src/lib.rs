//! `slack-blocks`: a Switchyard transform (world `transform`) that turns an
//! NVSentinel health event into a Slack Block Kit message, carried as the
//! event's data. See README.md for the message, the config keys and how
//! other events are handled.

wit_bindgen::generate!({
    path: "../../wit",
    world: "transform",
});

mod message;

use switchyard::plugin::host::{self, Level};

/// The CloudEvent type of the events this plugin returns.
pub const SLACK_TYPE: &str = "com.slack.message";
/// The extension that keeps the type the event had before.
pub const ORIGINAL_TYPE_EXTENSION: &str = "originaltype";

/// The plugin's settings, read from `config:` for every call (the host keeps
/// them, so reading is cheap and a reloaded config is seen at once).
#[derive(Debug, Default, Clone)]
pub struct Config {
    /// Adds `"channel"` to the message (for `chat.postMessage`).
    pub channel: Option<String>,
    /// Put in front of the text of fatal, unhealthy events (`<!here>`).
    pub mention: Option<String>,
    /// Put in front of the header.
    pub title: Option<String>,
}

impl Config {
    fn from_host() -> Self {
        let get = |key: &str| host::config(key).filter(|v| !v.trim().is_empty());
        Config {
            channel: get("channel"),
            mention: get("mention"),
            title: get("title"),
        }
    }
}

struct SlackBlocks;

impl Guest for SlackBlocks {
    fn transform(event: CloudEvent) -> Result<Vec<CloudEvent>, String> {
        let config = Config::from_host();
        let (out, kind) = to_slack(event, &config)?;
        if kind == message::Kind::Generic {
            host::log(
                Level::Debug,
                &format!(
                    "event {} is not an NVSentinel health event: generic message",
                    out.id
                ),
            );
        }
        Ok(vec![out])
    }
}

/// The Slack event for `event`: same id, source, subject and time; type
/// [`SLACK_TYPE`]; the original type in the [`ORIGINAL_TYPE_EXTENSION`]
/// extension; the message as JSON data.
pub fn to_slack(event: CloudEvent, config: &Config) -> Result<(CloudEvent, message::Kind), String> {
    let (msg, kind) = message::build(&event, config)?;
    let data =
        serde_json::to_vec(&msg).map_err(|e| format!("cannot serialise the message: {e}"))?;
    let mut extensions: Vec<(String, String)> = event
        .extensions
        .into_iter()
        .filter(|(name, _)| name != ORIGINAL_TYPE_EXTENSION)
        .collect();
    extensions.push((ORIGINAL_TYPE_EXTENSION.to_owned(), event.type_));
    Ok((
        CloudEvent {
            id: event.id,
            source: event.source,
            type_: SLACK_TYPE.to_owned(),
            subject: event.subject,
            time: event.time,
            datacontenttype: Some("application/json".to_owned()),
            // The schema described the old data, not the message.
            dataschema: None,
            extensions,
            data: Some(data),
        },
        kind,
    ))
}

export!(SlackBlocks);
