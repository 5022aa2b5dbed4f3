//! cloudfn-log: the `log` capability (`wit/log.wit`) and the guest's stdout/stderr: one
//! call's log lines, in the order the guest wrote them, capped in size so a chatty guest costs
//! the host a bounded amount.
//!
//! The call's [`LogSink`] is the runtime's (it is the call's record of what happened: the
//! host's own lines about the call, an outbound request refused, go there too); the runtime
//! hands it to this capability through [`HasLog`], the way `wasmtime-wasi`'s `WasiView` hands
//! over a context, so a call makes no state of its own for it.

use bytes::Bytes;
use cloudfn_capability::{Capability, HasInstances};
use cloudfn_model::{LogLine, LogStream};
use std::borrow::Cow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        interfaces: "import cloudfn:function/log@0.1.0;",
    });
}

use bindings::cloudfn::function::log;
use bindings::cloudfn::function::types::LogLevel;

/// The interface's name in the `cloudfn:function` package.
pub const INTERFACE: &str = "log";

/// A store's data that holds the call's log.
pub trait HasLog {
    /// The call's log.
    fn log_sink(&mut self) -> &Mutex<LogSink>;
}

/// The capability, as the runtime lists it.
pub struct Log;

impl<T: HasInstances + HasLog> Capability<T> for Log {
    fn interface(&self) -> &'static str {
        INTERFACE
    }

    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        log::add_to_linker::<T, LogData>(linker, |s: &mut T| CallLog(s.log_sink()))
    }
}

struct LogData;

impl HasData for LogData {
    type Data<'a> = CallLog<'a>;
}

/// The host side of the `log` interface: the call's sink.
struct CallLog<'a>(&'a Mutex<LogSink>);

/// Most log text kept per call (stdout, stderr and log lines together); the rest is dropped
/// and the record says so.
pub const MAX_LOG_BYTES: usize = 1 << 20;
/// What a log line costs against [`MAX_LOG_BYTES`] beyond its text (its record's size).
const LINE_OVERHEAD: usize = 64;

/// The logs of one call, in the order the guest wrote them.
#[derive(Debug, Default)]
pub struct LogSink {
    lines: Vec<LogLine>,
    partial: [Vec<u8>; 2],
    bytes: usize,
    truncated: bool,
}

impl LogSink {
    /// Charges `len` bytes against the cap; once the cap is hit, nothing more is kept.
    fn admit(&mut self, len: usize) -> bool {
        if self.truncated || self.bytes + len > MAX_LOG_BYTES {
            self.truncated = true;
            return false;
        }
        self.bytes += len;
        true
    }

    fn write(&mut self, stream: LogStream, mut data: &[u8]) {
        if !self.admit(data.len()) {
            return;
        }
        let idx = (stream == LogStream::Stderr) as usize;
        while let Some(pos) = data.iter().position(|b| *b == b'\n') {
            // A line costs more than its text: empty lines must not be free.
            if !self.admit(LINE_OVERHEAD) {
                return;
            }
            let mut line = std::mem::take(&mut self.partial[idx]);
            line.extend_from_slice(&data[..pos]);
            self.push_line(stream, None, line);
            data = &data[pos + 1..];
        }
        self.partial[idx].extend_from_slice(data);
    }

    fn push_line(&mut self, stream: LogStream, level: Option<&'static str>, line: Vec<u8>) {
        let level = level.map(Cow::Borrowed);
        let raw_len = line.len();
        let message = match String::from_utf8(line) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        // Invalid bytes become three-byte replacement characters: charge what is kept.
        if message.len() > raw_len && !self.admit(message.len() - raw_len) {
            return;
        }
        self.lines.push(LogLine {
            stream,
            level,
            message,
        });
    }

    /// A structured line at `level`, from the guest's `log` or from the host about the call.
    pub fn structured(&mut self, level: &'static str, message: String) {
        if self.admit(message.len() + LINE_OVERHEAD) {
            self.push_line(LogStream::Log, Some(level), message.into_bytes());
        }
    }

    /// The lines, with any unterminated output flushed as a final line.
    pub fn finish(&mut self) -> Vec<LogLine> {
        for (idx, stream) in [(0, LogStream::Stdout), (1, LogStream::Stderr)] {
            let rest = std::mem::take(&mut self.partial[idx]);
            if !rest.is_empty() {
                self.push_line(stream, None, rest);
            }
        }
        if std::mem::take(&mut self.truncated) {
            self.lines.push(LogLine {
                stream: LogStream::Stderr,
                level: None,
                message: format!("[cloudfn: logs truncated at {MAX_LOG_BYTES} bytes]"),
            });
        }
        std::mem::take(&mut self.lines)
    }

    /// What the guest last said on stderr about failing: for a panicking Rust guest, the
    /// panic message (not its source location); otherwise its last meaningful stderr line.
    pub fn stderr_summary(&self) -> Option<String> {
        let partial = String::from_utf8_lossy(&self.partial[1]);
        let lines: Vec<&str> = self
            .lines
            .iter()
            .filter(|l| l.stream == LogStream::Stderr)
            .map(|l| l.message.as_str())
            .chain(std::iter::once(partial.as_ref()))
            .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        // The panic's message, without where in the source it happened: the caller may be
        // another app, and the file and line are the author's (they are in the call's logs).
        if let Some(i) = lines.iter().rposition(|l| l.contains(" panicked at ")) {
            return Some(match lines.get(i + 1) {
                Some(message) => format!("panicked: {message}"),
                None => "panicked".to_string(),
            });
        }
        lines.last().map(|l| l.to_string())
    }
}

/// The guest's stdout or stderr, feeding a [`LogSink`]. Never fails the guest: output past the
/// cap is dropped, not an error (a chatty function must not crash on `println!`).
#[derive(Clone)]
pub struct LogPipe {
    sink: Arc<Mutex<LogSink>>,
    stream: LogStream,
}

impl LogPipe {
    /// A pipe writing `stream` lines into `sink`.
    pub fn new(sink: Arc<Mutex<LogSink>>, stream: LogStream) -> Self {
        LogPipe { sink, stream }
    }

    fn put(&self, data: &[u8]) {
        self.sink
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(self.stream, data);
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.put(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.put(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl log::Host for CallLog<'_> {
    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .structured(level, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sink_splits_lines_in_order_and_caps_size() {
        let mut sink = LogSink::default();
        sink.write(LogStream::Stdout, b"hel");
        sink.write(LogStream::Stderr, b"oops\n");
        sink.write(LogStream::Stdout, b"lo\nworld");
        let lines = sink.finish();
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l.stream, l.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (LogStream::Stderr, "oops"),
                (LogStream::Stdout, "hello"),
                (LogStream::Stdout, "world"),
            ]
        );
        let mut sink = LogSink::default();
        for _ in 0..(MAX_LOG_BYTES / 1000 + 10) {
            sink.write(LogStream::Stdout, &[b'x'; 1000]);
        }
        let lines = sink.finish();
        assert!(lines.last().unwrap().message.contains("truncated"));
        // Empty lines are not free: a flood of them is capped too.
        let mut sink = LogSink::default();
        for _ in 0..100_000 {
            sink.write(LogStream::Stderr, b"\n\n\n\n\n\n\n\n");
        }
        let lines = sink.finish();
        assert!(
            lines.len() < MAX_LOG_BYTES / LINE_OVERHEAD + 2,
            "{}",
            lines.len()
        );
        assert!(lines.last().unwrap().message.contains("truncated"));
    }
}
