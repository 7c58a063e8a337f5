//! Each receiver against a real server or broker.

mod amqp;
mod http;
mod http_python;
mod http_tls;
mod kafka;
mod mqtt;
mod nats;
mod redis;
mod webhook;
