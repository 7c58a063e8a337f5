//! Running it: live reload, metrics and health, traces, leader election, scale-out.

mod leader;
mod reload;
mod scale_out;
mod telemetry;
mod tracing;
