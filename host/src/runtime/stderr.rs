//! Capture of a guest's stdout and stderr into the host log.
//!
//! A guest has no terminal: whatever it writes (a Rust panic message, stray
//! `println!`) is split into lines and logged at `warn` with the guest's
//! identity, up to a byte budget per call; the rest is dropped and counted,
//! so a chatty guest can never flood the host. The tail of the current
//! call's output is also kept, to explain a crash (a panic message).
//!
//! Writes never fail and never block: the stream is always ready.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::limits;

/// A guest's captured output. Clones share the same buffer.
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Capture>>,
}

struct Capture {
    /// Who is writing, for the log.
    who: Arc<str>,
    /// Bytes of the current unfinished line.
    line: Vec<u8>,
    /// Bytes still allowed until the next reset.
    budget: usize,
    /// The budget restored by `reset`.
    capacity: usize,
    /// Bytes dropped since the last reset.
    dropped: usize,
    /// The tail of the output since the last reset.
    tail: VecDeque<u8>,
}

impl GuestOutput {
    /// A capture logging as `who`, allowing `capacity` bytes between resets.
    pub fn new(who: Arc<str>, capacity: usize) -> GuestOutput {
        GuestOutput {
            inner: Arc::new(Mutex::new(Capture {
                who,
                line: Vec::new(),
                budget: capacity,
                capacity,
                dropped: 0,
                tail: VecDeque::new(),
            })),
        }
    }

    /// Starts a new call: flushes a pending partial line, restores the
    /// budget, forgets the tail, and logs how much was dropped.
    pub fn reset(&self) {
        let mut capture = self.lock();
        capture.flush_line();
        if capture.dropped > 0 {
            tracing::warn!(guest = %capture.who, dropped_bytes = capture.dropped, "guest output over budget was dropped");
        }
        capture.dropped = 0;
        capture.budget = capture.capacity;
        capture.tail.clear();
    }

    /// The tail of the output since the last reset (for crash reports),
    /// trimmed; empty if there was none.
    pub fn tail(&self) -> String {
        let capture = self.lock();
        let bytes: Vec<u8> = capture.tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut capture = self.lock();
        for byte in bytes {
            if capture.tail.len() == limits::DEFAULT_GUEST_CRASH_STDERR_BYTES {
                capture.tail.pop_front();
            }
            capture.tail.push_back(*byte);
        }
        let admitted = bytes.len().min(capture.budget);
        capture.budget -= admitted;
        capture.dropped += bytes.len() - admitted;
        for byte in &bytes[..admitted] {
            if *byte == b'\n' {
                capture.flush_line();
            } else {
                capture.line.push(*byte);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Capture> {
        // A panic while logging leaves the capture usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Capture {
    fn flush_line(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.line);
        tracing::warn!(guest = %self.who, output = %line, "guest output");
        self.line.clear();
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: over-budget output is dropped, never refused.
        Ok(64 * 1024)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn output_past_the_budget_is_dropped_but_the_tail_is_kept() {
        let output = GuestOutput::new(Arc::from("test"), 8);
        output.write_bytes(b"hello\nworld, this is long\n");
        assert_eq!(output.lock().dropped, 26 - 8);
        assert!(output.tail().ends_with("this is long"));
        output.reset();
        assert_eq!(output.lock().dropped, 0);
        assert_eq!(output.lock().budget, 8);
        assert_eq!(output.tail(), "");
    }

    #[test]
    fn the_tail_keeps_only_the_last_bytes() {
        let output = GuestOutput::new(Arc::from("test"), 1 << 20);
        let long = vec![b'a'; limits::DEFAULT_GUEST_CRASH_STDERR_BYTES + 10];
        output.write_bytes(&long);
        output.write_bytes(b"panicked at the end");
        let tail = output.tail();
        assert_eq!(tail.len(), limits::DEFAULT_GUEST_CRASH_STDERR_BYTES);
        assert!(tail.ends_with("panicked at the end"));
    }
}
