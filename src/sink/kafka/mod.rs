//! The `kafka` receiver: each event produced to a templated topic, with
//! `acks=all` (rskafka always asks for it): an event counts as delivered
//! only when the partition leader and its in-sync replicas have it. The
//! partition comes from the record key with the Java client's murmur2
//! partitioner, so other producers with the same key agree and one key's
//! events stay in order. A batch is one produce request per partition, sent
//! concurrently; outcomes are per partition's events.
//!
//! The CloudEvents Kafka binding: `structured` sends the event JSON as the
//! value with `content-type: application/cloudevents+json`; `binary` puts
//! each attribute in a `ce_<name>` header, the data in the value and its
//! type in `content-type`. The key is the `partitionkey` extension (or the
//! configured template, else the event id).

pub mod config;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use rskafka::BackoffConfig;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use tokio::sync::OnceCell;
use tracing::info;

use self::config::{KafkaMode, KafkaSpec, check_topic};
use super::{Delivery, Item, Sink, binding};
use crate::BoxFuture;
use crate::event::AttributesReader;

const STRUCTURED: &str = "application/cloudevents+json; charset=utf-8";

pub struct KafkaSink {
    spec: KafkaSpec,
    /// Made on first use (again after a failed attempt); it finds the
    /// brokers again by itself afterwards.
    client: OnceCell<Client>,
    /// Partitions per topic, from the cluster's metadata.
    partitions: Mutex<HashMap<String, i32>>,
    /// One client per partition produced to (it knows the leader).
    producers: Mutex<HashMap<(String, i32), Arc<PartitionClient>>>,
}

impl KafkaSink {
    pub fn new(spec: &KafkaSpec) -> Self {
        Self {
            spec: spec.clone(),
            client: OnceCell::new(),
            partitions: Mutex::default(),
            producers: Mutex::default(),
        }
    }

    /// rskafka retries by itself until this deadline; past it the error
    /// reaches the receiver's own retry policy.
    fn backoff(&self) -> BackoffConfig {
        BackoffConfig {
            init_backoff: std::time::Duration::from_millis(50),
            max_backoff: std::time::Duration::from_secs(1),
            base: 2.0,
            deadline: Some(self.spec.timeout),
        }
    }

    async fn client(&self) -> Result<&Client, String> {
        self.client
            .get_or_try_init(|| async {
                let build = ClientBuilder::new(self.spec.brokers.clone())
                    .client_id("switchyard")
                    .backoff_config(self.backoff())
                    .build();
                let client = tokio::time::timeout(self.spec.timeout, build)
                    .await
                    .map_err(|_| {
                        format!(
                            "cannot reach the Kafka brokers within {:?}",
                            self.spec.timeout
                        )
                    })?
                    .map_err(|e| format!("cannot reach the Kafka brokers: {}", describe(&e)))?;
                info!("connected to Kafka");
                Ok(client)
            })
            .await
    }

    /// The topic's partition count, from the cache or the cluster.
    async fn partition_count(&self, client: &Client, topic: &str) -> Result<i32, String> {
        if let Some(n) = self.partitions.lock().expect("lock").get(topic) {
            return Ok(*n);
        }
        let topics = tokio::time::timeout(self.spec.timeout, client.list_topics())
            .await
            .map_err(|_| "Kafka metadata: no answer".to_owned())?
            .map_err(|e| format!("Kafka metadata: {}", describe(&e)))?;
        let mut cache = self.partitions.lock().expect("lock");
        for t in topics {
            cache.insert(t.name, t.partitions.len() as i32);
        }
        match cache.get(topic) {
            Some(n) if *n > 0 => Ok(*n),
            _ => Err(format!(
                "Kafka topic {topic:?} does not exist (create it; events wait meanwhile)"
            )),
        }
    }

    async fn producer(
        &self,
        client: &Client,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, String> {
        let key = (topic.to_owned(), partition);
        if let Some(p) = self.producers.lock().expect("lock").get(&key) {
            return Ok(p.clone());
        }
        let made = client.partition_client(topic, partition, UnknownTopicHandling::Error);
        let producer = tokio::time::timeout(self.spec.timeout, made)
            .await
            .map_err(|_| format!("Kafka: no leader for {topic}/{partition} found in time"))?
            .map_err(|e| format!("Kafka: {}", describe(&e)))?;
        let producer = Arc::new(producer);
        self.producers
            .lock()
            .expect("lock")
            .insert(key, producer.clone());
        Ok(producer)
    }

    /// Forgets what the cluster said about `topic` (after a failure).
    fn forget(&self, topic: &str) {
        self.partitions.lock().expect("lock").remove(topic);
        self.producers
            .lock()
            .expect("lock")
            .retain(|(t, _), _| t != topic);
    }

    /// The topic, key and record of one event.
    fn record(&self, item: &Item) -> Result<(String, Vec<u8>, Record), String> {
        let event = item.event();
        let topic = self
            .spec
            .topic
            .render(event)
            .map_err(|e| format!("topic: {e}"))?;
        check_topic(&topic).map_err(|e| format!("topic: {e}"))?;
        let key = match &self.spec.key {
            Some(t) => t.render(event).map_err(|e| format!("key: {e}"))?,
            None => event
                .extension("partitionkey")
                .map_or_else(|| event.id().to_owned(), ToString::to_string),
        };
        let mut headers = BTreeMap::new();
        let value = match self.spec.mode {
            KafkaMode::Structured => {
                headers.insert("content-type".to_owned(), STRUCTURED.as_bytes().to_vec());
                item.json().to_vec()
            }
            KafkaMode::Binary => {
                for (name, text) in binding::attributes(event) {
                    headers.insert(format!("ce_{name}"), text.into_bytes());
                }
                if let Some(t) = binding::content_type(event) {
                    headers.insert("content-type".to_owned(), t.as_bytes().to_vec());
                }
                binding::data(event)
            }
        };
        let record = Record {
            key: Some(key.clone().into_bytes()),
            value: Some(value),
            headers,
            timestamp: event.time().copied().unwrap_or_else(chrono::Utc::now),
        };
        Ok((topic, key.into_bytes(), record))
    }

    /// Produces one partition's records; the outcome for all of them.
    async fn produce(
        &self,
        client: &Client,
        topic: &str,
        partition: i32,
        records: Vec<Record>,
    ) -> Delivery {
        let producer = match self.producer(client, topic, partition).await {
            Ok(p) => p,
            Err(e) => {
                self.forget(topic);
                return Delivery::retry(e);
            }
        };
        let produced = tokio::time::timeout(
            self.spec.timeout,
            producer.produce(records, Compression::NoCompression),
        )
        .await;
        match produced {
            Ok(Ok(_offsets)) => Delivery::Delivered,
            Ok(Err(e)) => {
                self.forget(topic);
                classify(&e)
            }
            Err(_) => {
                self.forget(topic);
                Delivery::retry(format!(
                    "Kafka: no acknowledgement within {:?}",
                    self.spec.timeout
                ))
            }
        }
    }
}

impl Sink for KafkaSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let client = match self.client().await {
                Ok(c) => c,
                Err(e) => return Delivery::retry(e),
            };
            let mut outcomes = vec![Delivery::Delivered; items.len()];
            // (topic, partition) → the indexes and records, in order.
            let mut groups: BTreeMap<(String, i32), (Vec<usize>, Vec<Record>)> = BTreeMap::new();
            for (i, item) in items.iter().enumerate() {
                let (topic, key, record) = match self.record(item) {
                    Ok(r) => r,
                    Err(reason) => {
                        outcomes[i] = Delivery::Reject(reason);
                        continue;
                    }
                };
                let partitions = match self.partition_count(client, &topic).await {
                    Ok(n) => n,
                    Err(e) => {
                        outcomes[i] = Delivery::retry(e);
                        continue;
                    }
                };
                let group = groups
                    .entry((topic, partition(&key, partitions)))
                    .or_default();
                group.0.push(i);
                group.1.push(record);
            }
            let sends =
                groups
                    .into_iter()
                    .map(|((topic, partition), (indexes, records))| async move {
                        let outcome = self.produce(client, &topic, partition, records).await;
                        (indexes, outcome)
                    });
            for (indexes, outcome) in futures_util::future::join_all(sends).await {
                for i in indexes {
                    outcomes[i] = outcome.clone();
                }
            }
            Delivery::from_each(outcomes)
        })
    }
}

/// A produce error: a record the cluster will never take is rejected;
/// anything else (no leader, not enough replicas, a timeout) is retried.
fn classify(e: &KafkaError) -> Delivery {
    let reason = format!("Kafka: {}", describe(e));
    match e {
        KafkaError::ServerError {
            protocol_error:
                ProtocolError::MessageTooLarge
                | ProtocolError::RecordListTooLarge
                | ProtocolError::InvalidTopicException
                | ProtocolError::TopicAuthorizationFailed
                | ProtocolError::InvalidRecord,
            ..
        } => Delivery::Reject(reason),
        _ => Delivery::retry(reason),
    }
}

/// An error in a line: the protocol error and the broker's message, not the
/// request and response dumps rskafka's own text carries.
fn describe(e: &KafkaError) -> String {
    match e {
        KafkaError::ServerError {
            protocol_error,
            error_message,
            ..
        } => match error_message {
            Some(m) => format!("{protocol_error:?} ({m})"),
            None => format!("{protocol_error:?}"),
        },
        other => other.to_string(),
    }
}

/// The partition of `key` among `partitions`, as the Java client's default
/// partitioner computes it: murmur2 of the key, sign bit cleared, modulo.
fn partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// MurmurHash2 (32-bit) with Kafka's seed, as in its Java client.
fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Apache Kafka's own partitioner tests.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        for key in [&b"gpu-node-1"[..], b"", b"x"] {
            let p = partition(key, 3);
            assert!((0..3).contains(&p));
            assert_eq!(p, partition(key, 3));
        }
    }
}
