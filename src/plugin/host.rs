//! What a plugin instance sees of the host: the `switchyard:plugin/host`
//! imports (log, config), WASI with nothing granted, `wasi:http` limited to
//! the plugin's `allowedHosts`, and the memory limiter.
//!
//! Denied is the default: no preopened directories, no environment, no
//! sockets, no arguments. Guest stdout/stderr become log lines tagged with
//! the plugin's name. A refused HTTP request is an error value the guest
//! sees (`HttpRequestDenied`), never a host failure.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::{debug, error, info, trace, warn};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::PluginInfo;
use super::bindings::switchyard::plugin::{host, types};

/// The data of one instance's `Store`.
pub struct HostState {
    pub(super) info: Arc<PluginInfo>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: HttpPolicy,
    pub(super) limits: MemoryLimit,
    /// The current call must end by then (checked at every epoch tick).
    pub(super) deadline: Instant,
}

impl HostState {
    pub fn new(info: Arc<PluginInfo>) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestOutput {
                info: info.clone(),
                stream: "stdout",
            })
            .stderr(GuestOutput {
                info: info.clone(),
                stream: "stderr",
            })
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            limits: MemoryLimit::new(info.limits.memory),
            hooks: HttpPolicy { info: info.clone() },
            info,
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            deadline: Instant::now(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let plugin = &*self.info.name;
        let message = clip(&message);
        match level {
            host::Level::Trace => trace!(plugin, "{message}"),
            host::Level::Debug => debug!(plugin, "{message}"),
            host::Level::Info => info!(plugin, "{message}"),
            host::Level::Warn => warn!(plugin, "{message}"),
            host::Level::Error => error!(plugin, "{message}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.info.config.get(&key).cloned()
    }
}

/// Longest guest log line kept; the rest is cut (a guest must not flood the log).
const MAX_LOG_LINE: usize = 4096;

fn clip(message: &str) -> &str {
    if message.len() <= MAX_LOG_LINE {
        return message;
    }
    let mut end = MAX_LOG_LINE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// `wasi:http` requests go out only to the plugin's `allowedHosts`.
struct HttpPolicy {
    info: Arc<PluginInfo>,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        if !self.info.allows(host, port) {
            self.info.stats.denied.fetch_add(1, Ordering::Relaxed);
            warn!(plugin = %self.info.name, host, port, "plugin HTTP request denied: host not in allowedHosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        debug!(plugin = %self.info.name, host, port, method = %request.method(), "plugin HTTP request");
        wasmtime_wasi_http::default_hooks().send_request(request, options, fut)
    }
}

/// The memory limiter: all linear memories of an instance together stay
/// within `limits.memory`. Growing past it traps (and is counted).
pub struct MemoryLimit {
    max: usize,
    used: usize,
    pub(super) exceeded: bool,
}

/// The error a memory limit trap carries.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {max} bytes exceeded (wanted {wanted} bytes)")]
pub struct MemoryExceeded {
    pub max: usize,
    pub wanted: usize,
}

impl MemoryLimit {
    /// Whether the instance holds more than three quarters of its limit:
    /// runtimes that never shrink (a JavaScript heap before its collector
    /// settles, componentize-py's buffers for returned data) would reach the
    /// limit on some later, innocent event. Such an instance is retired after
    /// a successful call rather than trapping later.
    pub fn nearly_full(&self) -> bool {
        self.used > self.max / 4 * 3
    }

    fn new(max: u64) -> Self {
        Self {
            max: usize::try_from(max).unwrap_or(usize::MAX),
            used: 0,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let wanted = self.used - current.min(self.used) + desired;
        if wanted > self.max {
            self.exceeded = true;
            return Err(MemoryExceeded {
                max: self.max,
                wanted,
            }
            .into());
        }
        self.used = wanted;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Table elements are small; a million is far beyond any real plugin.
        Ok(desired <= 1_000_000)
    }
}

/// Guest stdout/stderr: each line becomes a log line with the plugin's name.
struct GuestOutput {
    info: Arc<PluginInfo>,
    stream: &'static str,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineLogger {
            info: self.info.clone(),
            stream: self.stream,
            line: Vec::new(),
        })
    }
}

struct LineLogger {
    info: Arc<PluginInfo>,
    stream: &'static str,
    line: Vec<u8>,
}

impl LineLogger {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let text = clip(text.trim_end());
        if self.stream == "stderr" {
            warn!(plugin = %self.info.name, stream = self.stream, "{text}");
        } else {
            info!(plugin = %self.info.name, stream = self.stream, "{text}");
        }
        self.line.clear();
    }
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LOG_LINE {
                self.line.push(b);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::plugin::PluginSpec;

    /// A log sink for the test's subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn guest_output_becomes_log_lines_with_the_plugins_name() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let spec = PluginSpec::bare("/x/redact.wasm".into(), std::time::Duration::from_secs(1));
        let info = Arc::new(PluginInfo::new(&spec));
        let out = GuestOutput {
            info: info.clone(),
            stream: "stdout",
        };
        let mut stream = Pin::from(out.async_stream());
        stream.write_all(b"hello from the gu").await.unwrap();
        stream.write_all(b"est\nsecond line\n").await.unwrap();
        let err = GuestOutput {
            info,
            stream: "stderr",
        };
        let mut stream = Pin::from(err.async_stream());
        stream.write_all(&vec![b'x'; 10_000]).await.unwrap();
        stream.flush().await.unwrap();
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 3, "{log}");
        assert!(lines[0].contains("INFO") && lines[0].contains("hello from the guest"));
        assert!(
            lines[0].contains("plugin=\"redact\"") || lines[0].contains("plugin=redact"),
            "{log}"
        );
        assert!(lines[1].contains("second line"));
        assert!(
            lines[2].contains("WARN") && lines[2].contains("stream=\"stderr\""),
            "{log}"
        );
        // A flood is cut at 4 KiB a line.
        assert_eq!(lines[2].matches('x').count(), MAX_LOG_LINE);
    }
}
