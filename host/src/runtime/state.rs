//! What every guest store holds (the sandbox), and how WASI is linked.
//!
//! A Rust `wasm32-wasip2` guest imports a dozen WASI 0.2 interfaces even if
//! it never does I/O (std links them for panics and stdio), so they are
//! linked, but over an **empty** context: no arguments, no environment, no
//! preopened directories, no sockets or name lookups. Stdout and stderr go to
//! the host log through [`GuestOutput`]. Clocks and random numbers work.
//!
//! Guests may not block: `wasi:io/poll`'s `poll` and `pollable.block` trap
//! ("a guest cannot block"), so a guest that sleeps fails at once instead
//! of stalling its shard past its deadline (epoch interruption only stops
//! running wasm, not a host-side wait).

use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::limits::{GuestLimiter, LogAdmission, LogBudget, truncate_str};
use super::stderr::GuestOutput;

/// The version of `wasi:io` that wasmtime-wasi 48 defines; guests importing
/// any 0.2.x version link against it.
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";

/// Severity of a guest log record (both worlds' `log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestLogLevel {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

/// The sandbox part of a guest's store data.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory and table caps.
    pub limiter: GuestLimiter,
    /// The log import's budget.
    pub log: LogBudget,
    /// Captured stdout and stderr.
    pub output: GuestOutput,
    /// Who the guest is, for logs ("shard part-000 module 3fa2…").
    pub who: Arc<str>,
}

impl Sandbox {
    /// A sandbox with an empty WASI context.
    pub fn new(
        who: Arc<str>,
        limiter: GuestLimiter,
        log: LogBudget,
        output: GuestOutput,
    ) -> Sandbox {
        let wasi = WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            limiter,
            log,
            output,
            who,
        }
    }

    /// The WASI view of the sandbox.
    pub fn wasi_view(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }

    /// The resource table (also used for the worlds' own resources).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The `log` import: writes a record within the budget.
    pub fn log(&mut self, level: GuestLogLevel, message: &str) {
        let LogAdmission::Write { bytes } = self.log.admit(message.len()) else {
            return;
        };
        let text = truncate_str(message, bytes);
        let truncated = text.len() < message.len();
        let who = &*self.who;
        match level {
            GuestLogLevel::Trace => tracing::trace!(guest = %who, truncated, "{text}"),
            GuestLogLevel::Debug => tracing::debug!(guest = %who, truncated, "{text}"),
            GuestLogLevel::Info => tracing::info!(guest = %who, truncated, "{text}"),
            GuestLogLevel::Warn => tracing::warn!(guest = %who, truncated, "{text}"),
            GuestLogLevel::Error => tracing::error!(guest = %who, truncated, "{text}"),
        }
    }

    /// Starts a consumer call: restores the per-call log and output budgets.
    pub fn start_call(&mut self) {
        let dropped = self.log.reset();
        if dropped > 0 {
            tracing::warn!(guest = %self.who, dropped_records = dropped, "guest log records over budget were dropped");
        }
        self.output.reset();
    }
}

/// How a world's exports are called, which decides how WASI is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStyle {
    /// `call_async` on a fiber (the consumer world).
    Async,
    /// Plain blocking calls (the chunker world).
    Sync,
}

/// Links WASI p2 into `linker` and makes blocking on `wasi:io/poll` trap.
pub fn link_wasi<T: WasiView + 'static>(
    linker: &mut Linker<T>,
    style: CallStyle,
) -> wasmtime::Result<()> {
    match style {
        CallStyle::Async => wasmtime_wasi::p2::add_to_linker_async(linker)?,
        CallStyle::Sync => wasmtime_wasi::p2::add_to_linker_sync(linker)?,
    }
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL)?;
    for name in ["poll", "[method]pollable.block"] {
        poll.func_new(name, move |_store, _ty, _params, _results| {
            Err(wasmtime::format_err!(
                "a guest cannot block: `{WASI_IO_POLL}#{name}` is not available (no sleeping or \
                 waiting inside a guest call)"
            ))
        })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}
