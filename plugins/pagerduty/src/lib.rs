//! `pagerduty`: a Switchyard receiver (world `sink`) that sends each event
//! to the PagerDuty Events API v2 with `wasi:http/outgoing-handler`. See
//! README.md for the request, the config keys and the answers.

wit_bindgen::generate!({
    path: "../../wit",
    world: "sink",
});

mod config;
mod http;
mod pd;

use switchyard::plugin::host::{self, Level};

use config::Config;
use http::SendError;

struct PagerDuty;

impl Guest for PagerDuty {
    fn deliver(events: Vec<CloudEvent>) -> Delivery {
        let config = match Config::from_host() {
            Ok(config) => config,
            Err(reason) => return Delivery::Reject(reason),
        };
        // In order; the first event that fails decides the answer for the
        // batch. A retried batch sends its first events again: their
        // dedup_key makes PagerDuty treat them as the same alert.
        for event in &events {
            if let Some(answer) = deliver_one(event, &config) {
                return answer;
            }
        }
        Delivery::Ok
    }
}

/// Sends one event; `None` when PagerDuty accepted it.
fn deliver_one(event: &CloudEvent, config: &Config) -> Option<Delivery> {
    let alert = pd::alert(event, config);
    let body = match serde_json::to_vec(&alert.body) {
        Ok(body) => body,
        Err(e) => {
            return Some(Delivery::Reject(format!(
                "event {}: cannot serialise: {e}",
                event.id
            )));
        }
    };
    let what = format!(
        "event {} ({} {:?})",
        event.id, alert.action, alert.dedup_key
    );
    match http::post_json(&config.endpoint, &body, config.timeout_ns) {
        Ok(response) => {
            host::log(
                Level::Debug,
                &format!(
                    "{what}: {} answered {}",
                    config.endpoint.authority, response.status
                ),
            );
            match pd::classify(&response) {
                pd::Outcome::Accepted => None,
                pd::Outcome::Retry(reason) => Some(Delivery::Retry(format!("{what}: {reason}"))),
                pd::Outcome::Reject(reason) => Some(Delivery::Reject(format!("{what}: {reason}"))),
            }
        }
        Err(SendError::Denied) => {
            host::log(Level::Debug, &format!("{what}: request denied by the host"));
            Some(Delivery::Reject(format!(
                "{what}: the host denied the request to {}: add it to the plugin's allowedHosts",
                config.endpoint.authority
            )))
        }
        Err(SendError::Invalid(reason)) => {
            host::log(Level::Debug, &format!("{what}: invalid request: {reason}"));
            Some(Delivery::Reject(format!(
                "{what}: invalid request: {reason}"
            )))
        }
        Err(SendError::Transport(reason)) => {
            host::log(Level::Debug, &format!("{what}: {reason}"));
            Some(Delivery::Retry(format!(
                "{what}: request to {} failed: {reason}",
                config.endpoint.authority
            )))
        }
    }
}

export!(PagerDuty);
