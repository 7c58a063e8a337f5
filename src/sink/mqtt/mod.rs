//! The `mqtt` receiver: each event published to a templated topic, MQTT 5
//! or 3.1.1, QoS 1 by default: an event counts as delivered only when the
//! broker's PUBACK for it arrived. A batch is published at once and its
//! acks awaited together; outcomes are per event.
//!
//! The CloudEvents MQTT binding: `structured` sends the event JSON (MQTT 5
//! adds the content type `application/cloudevents+json`); `binary` (MQTT 5
//! only) puts each attribute in a user property named after it, the content
//! type in the content type property and the data in the payload.
//!
//! The client (rumqttc) runs its connection in an event loop that reports
//! each publish it writes (with the packet id it chose) and each PUBACK. A
//! publish is matched to its packet id by order: handing a publish to the
//! client and queueing its waiter happen under one lock, and the client
//! writes publishes in the order it was handed them. After a connection
//! failure the session is clean (nothing is resent by the client): every
//! waiting publish is failed and the pipeline retries it.

pub mod config;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::v5::{PubAckReason, PublishProperties};
use tokio::sync::{OnceCell, oneshot};
use tracing::{debug, info, warn};

use self::config::{MqttMode, MqttSpec, MqttVersion, check_topic};
use super::{Delivery, Item, Sink, binding};
use crate::BoxFuture;

const STRUCTURED: &str = "application/cloudevents+json; charset=utf-8";

/// Publishes the client may hold before `try_publish` says it is full: far
/// more than the batches in flight (concurrency × batch size).
const CLIENT_QUEUE: usize = 20_000;

/// The largest packet MQTT can carry (256 MiB, less the fixed header).
const MAX_PACKET: u32 = 268_435_455;

pub struct MqttSink {
    spec: MqttSpec,
    /// Made on first use; its event loop reconnects by itself.
    link: OnceCell<Link>,
}

/// A client and the task driving its event loop.
struct Link {
    client: Client,
    acks: Arc<Acks>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// What the event loop reported about our publishes.
enum Progress {
    /// A publish was written with this packet id (0 for QoS 0).
    Written(u16),
    /// The next publish waits for its packet id to be freed first (the
    /// broker acked out of order); it is written later.
    Collided,
    /// The broker acknowledged a packet id.
    Acked(u16, Delivery),
    Connected,
}

type Waiter = oneshot::Sender<Delivery>;

/// Publishes awaiting their packet id or their PUBACK.
#[derive(Default)]
struct Acks {
    /// Held while publishes are handed to the client and their waiters
    /// queued, and while the driver resets after a failure: the queue's
    /// order is the client's order.
    order: tokio::sync::Mutex<()>,
    state: Mutex<AckState>,
}

#[derive(Default)]
struct AckState {
    /// Handed to the client, not yet written.
    queued: VecDeque<Waiter>,
    /// Written, awaiting the broker's PUBACK.
    inflight: HashMap<u16, Waiter>,
    collided: Option<Waiter>,
    connected: bool,
    /// A failure was logged at WARN since the last connection.
    warned: bool,
}

impl Acks {
    fn on(&self, progress: Progress) {
        let mut s = self.state.lock().expect("acks lock");
        match progress {
            Progress::Written(pkid) => {
                let waiter = match s.collided.take() {
                    Some(w) => Some(w),
                    None => s.queued.pop_front(),
                };
                if let Some(w) = waiter {
                    if pkid == 0 {
                        let _ = w.send(Delivery::Delivered);
                    } else {
                        s.inflight.insert(pkid, w);
                    }
                }
            }
            Progress::Collided => s.collided = s.queued.pop_front(),
            Progress::Acked(pkid, outcome) => {
                if let Some(w) = s.inflight.remove(&pkid) {
                    let _ = w.send(outcome);
                }
            }
            Progress::Connected => {
                if !s.connected {
                    info!("connected to the MQTT broker");
                }
                s.connected = true;
                s.warned = false;
            }
        }
    }

    /// Fails every waiting publish; returns whether the link was up and
    /// whether this is the first failure since it was (or since the start).
    fn fail_all(&self, reason: &str) -> (bool, bool) {
        let mut guard = self.state.lock().expect("acks lock");
        let s = &mut *guard;
        let mut waiters: Vec<Waiter> = s.queued.drain(..).collect();
        waiters.extend(s.inflight.drain().map(|(_, w)| w));
        waiters.extend(s.collided.take());
        let was_up = std::mem::replace(&mut s.connected, false);
        let first = !std::mem::replace(&mut s.warned, true);
        drop(guard);
        for w in waiters {
            let _ = w.send(Delivery::retry(reason));
        }
        (was_up, first)
    }
}

impl MqttSink {
    pub fn new(spec: &MqttSpec) -> Self {
        Self {
            spec: spec.clone(),
            link: OnceCell::new(),
        }
    }

    async fn link(&self) -> Result<&Link, String> {
        self.link.get_or_try_init(|| async { self.connect() }).await
    }

    /// Makes the client; the driver task connects (and reconnects).
    fn connect(&self) -> Result<Link, String> {
        let spec = &self.spec;
        let acks = Arc::new(Acks::default());
        let tls = match &spec.tls {
            Some(t) => Some(rumqttc::TlsConfiguration::Rustls(Arc::new(
                super::tls::client_config(t, "mqtt")?,
            ))),
            None => None,
        };
        let keep_alive = Duration::from_secs(30);
        let connect_timeout = spec.timeout.as_secs().max(1);
        let (client, driver) = match spec.version {
            MqttVersion::V5 => {
                use rumqttc::v5::{AsyncClient, MqttOptions};
                let mut options = MqttOptions::new(&spec.client_id, &spec.host, spec.port);
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_start(true)
                    .set_connection_timeout(connect_timeout)
                    .set_max_packet_size(Some(MAX_PACKET))
                    .set_outgoing_inflight_upper_limit(u16::MAX);
                if let Some((user, password)) = &spec.credentials {
                    options.set_credentials(user, &password.0);
                }
                if let Some(tls) = tls {
                    options.set_transport(rumqttc::Transport::tls_with_config(tls));
                }
                let (client, eventloop) = AsyncClient::new(options, CLIENT_QUEUE);
                let driver = tokio::spawn(drive_v5(eventloop, acks.clone()));
                (Client::V5(client), driver)
            }
            MqttVersion::V311 => {
                use rumqttc::{AsyncClient, MqttOptions, NetworkOptions};
                let mut options = MqttOptions::new(&spec.client_id, &spec.host, spec.port);
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_session(true)
                    .set_max_packet_size(MAX_PACKET as usize, MAX_PACKET as usize)
                    .set_inflight(1000);
                if let Some((user, password)) = &spec.credentials {
                    options.set_credentials(user, &password.0);
                }
                if let Some(tls) = tls {
                    options.set_transport(rumqttc::Transport::tls_with_config(tls));
                }
                let (client, mut eventloop) = AsyncClient::new(options, CLIENT_QUEUE);
                let mut network = NetworkOptions::new();
                network.set_connection_timeout(connect_timeout);
                eventloop.set_network_options(network);
                let driver = tokio::spawn(drive_v311(eventloop, acks.clone()));
                (Client::V311(client), driver)
            }
        };
        Ok(Link {
            client,
            acks,
            driver,
        })
    }

    /// The topic, payload and MQTT 5 properties of one event.
    fn message(&self, item: &Item) -> Result<(String, Vec<u8>, PublishProperties), String> {
        let event = item.event();
        let topic = self
            .spec
            .topic
            .render(event)
            .map_err(|e| format!("topic: {e}"))?;
        check_topic(&topic).map_err(|e| format!("topic: {e}"))?;
        let mut properties = PublishProperties::default();
        let payload = match self.spec.mode {
            MqttMode::Structured => {
                properties.content_type = Some(STRUCTURED.to_owned());
                item.json().to_vec()
            }
            MqttMode::Binary => {
                properties.content_type = binding::content_type(event).map(str::to_owned);
                properties.user_properties = binding::attributes(event)
                    .map(|(name, text)| (name.to_owned(), text))
                    .collect();
                binding::data(event)
            }
        };
        if payload.len() + topic.len() > MAX_PACKET as usize - 1024 {
            return Err(format!(
                "the event is {} bytes, more than an MQTT packet carries",
                payload.len()
            ));
        }
        Ok((topic, payload, properties))
    }

    fn publish(
        &self,
        client: &Client,
        topic: String,
        payload: Vec<u8>,
        properties: PublishProperties,
    ) -> Result<(), String> {
        let retain = self.spec.retain;
        let result = match client {
            Client::V5(c) => {
                use rumqttc::v5::mqttbytes::QoS;
                let qos = if self.spec.acknowledged {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                c.try_publish_with_properties(topic, qos, retain, payload, properties)
                    .map_err(|e| e.to_string())
            }
            Client::V311(c) => {
                let qos = if self.spec.acknowledged {
                    rumqttc::QoS::AtLeastOnce
                } else {
                    rumqttc::QoS::AtMostOnce
                };
                c.try_publish(topic, qos, retain, payload)
                    .map_err(|e| e.to_string())
            }
        };
        result.map_err(|e| format!("MQTT client: {e}"))
    }
}

impl Sink for MqttSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let link = match self.link().await {
                Ok(l) => l,
                Err(e) => return Delivery::retry(e),
            };
            let mut outcomes = vec![Delivery::Delivered; items.len()];
            let mut waits = Vec::with_capacity(items.len());
            {
                let _order = link.acks.order.lock().await;
                for (i, item) in items.iter().enumerate() {
                    let (topic, payload, properties) = match self.message(item) {
                        Ok(m) => m,
                        Err(reason) => {
                            outcomes[i] = Delivery::Reject(reason);
                            continue;
                        }
                    };
                    let (tx, rx) = oneshot::channel();
                    link.acks
                        .state
                        .lock()
                        .expect("acks lock")
                        .queued
                        .push_back(tx);
                    if let Err(e) = self.publish(&link.client, topic, payload, properties) {
                        // Not handed over: its waiter is the last queued.
                        link.acks.state.lock().expect("acks lock").queued.pop_back();
                        outcomes[i] = Delivery::retry(e);
                        continue;
                    }
                    waits.push((i, rx));
                }
            }
            let deadline = tokio::time::Instant::now() + self.spec.timeout;
            for (i, rx) in waits {
                outcomes[i] = match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => Delivery::retry("MQTT: the connection was reset"),
                    Err(_) => Delivery::retry(format!(
                        "MQTT: no acknowledgement within {:?}",
                        self.spec.timeout
                    )),
                };
            }
            Delivery::from_each(outcomes)
        })
    }
}

/// After a connection failure: nothing the client still holds is resent
/// (the session is clean), so every waiting publish is failed, under the
/// order lock so that no publish is handed over meanwhile. Logged once per
/// outage, not at every reconnection attempt.
async fn reset(acks: &Acks, clear: impl FnOnce(), error: String) {
    let (was_up, first) = {
        let _order = acks.order.lock().await;
        clear();
        acks.fail_all(&format!("MQTT broker: {error}"))
    };
    match (was_up, first) {
        (true, _) => warn!("MQTT connection lost ({error}); reconnecting"),
        (false, true) => {
            warn!("cannot connect to the MQTT broker ({error}); retrying every {RECONNECT:?}")
        }
        (false, false) => debug!("cannot connect to the MQTT broker: {error}"),
    }
    tokio::time::sleep(RECONNECT).await;
}

/// The pause before reconnecting.
const RECONNECT: Duration = Duration::from_millis(500);

/// The driver loop, the same for both protocol versions: their event loops
/// are different types of the same shape. `$progress` maps an event to what
/// it says about our publishes, if anything.
macro_rules! drive {
    ($eventloop:ident, $acks:ident, $progress:expr) => {
        loop {
            match $eventloop.poll().await {
                Ok(event) => {
                    if let Some(progress) = $progress(event) {
                        $acks.on(progress);
                    }
                }
                Err(e) => {
                    reset(
                        &$acks,
                        || {
                            $eventloop.clean();
                            $eventloop.pending.clear();
                            $eventloop.state.events.clear();
                            $eventloop.state.collision = None;
                        },
                        e.to_string(),
                    )
                    .await;
                }
            }
        }
    };
}

async fn drive_v5(mut eventloop: rumqttc::v5::EventLoop, acks: Arc<Acks>) {
    use rumqttc::v5::{Event, Incoming};
    drive!(eventloop, acks, |event: Event| match event {
        Event::Outgoing(Outgoing::Publish(pkid)) => Some(Progress::Written(pkid)),
        Event::Outgoing(Outgoing::AwaitAck(_)) => Some(Progress::Collided),
        Event::Incoming(Incoming::PubAck(ack)) => {
            Some(Progress::Acked(ack.pkid, puback_outcome(ack.reason)))
        }
        Event::Incoming(Incoming::ConnAck(_)) => Some(Progress::Connected),
        _ => None,
    })
}

async fn drive_v311(mut eventloop: rumqttc::EventLoop, acks: Arc<Acks>) {
    use rumqttc::{Event, Packet};
    // MQTT 3.1.1 PUBACKs carry no reason: an ack is a delivery.
    drive!(eventloop, acks, |event: Event| match event {
        Event::Outgoing(Outgoing::Publish(pkid)) => Some(Progress::Written(pkid)),
        Event::Outgoing(Outgoing::AwaitAck(_)) => Some(Progress::Collided),
        Event::Incoming(Packet::PubAck(ack)) =>
            Some(Progress::Acked(ack.pkid, Delivery::Delivered)),
        Event::Incoming(Packet::ConnAck(_)) => Some(Progress::Connected),
        _ => None,
    })
}

/// An MQTT 5 PUBACK's reason: refusals that a retry cannot change are
/// rejections.
fn puback_outcome(reason: PubAckReason) -> Delivery {
    match reason {
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Delivery::Delivered,
        PubAckReason::NotAuthorized
        | PubAckReason::TopicNameInvalid
        | PubAckReason::PayloadFormatInvalid => {
            Delivery::Reject(format!("the MQTT broker refused it ({reason:?})"))
        }
        other => Delivery::retry(format!("the MQTT broker did not take it ({other:?})")),
    }
}
