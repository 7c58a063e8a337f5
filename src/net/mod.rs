//! Runtime pieces several components share: reqwest clients built from
//! TLS settings (the HTTP and webhook receivers, OAuth2, the HTTP source's
//! token introspection, Nomad, OTLP), and the NATS connection (the `nats`
//! receiver and source).

pub mod http_client;
pub mod nats;
