//! Each source against a real server or a faithful replica of one.

mod http;
mod kubernetes;
mod mongodb;
mod mongodb_crash;
mod mongodb_restart;
mod nomad;
