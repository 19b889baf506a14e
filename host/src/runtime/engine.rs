//! [`Runtime`]: the process's one wasmtime `Engine`, its epoch ticker, its
//! component cache and the linkers of both worlds.
//!
//! Deadlines use **epoch interruption**: a ticker thread increments the
//! engine's epoch every [`RuntimeConfig::epoch_tick`], and each call sets
//! its store's deadline to `ceil(deadline / tick) + 1` ticks ahead, so a
//! runaway guest is interrupted no earlier than its deadline and at most one
//! tick after it (~9% call overhead, measured). Fuel metering is optional
//! ([`RuntimeConfig::fuel`], ~10% more) because it is an engine-wide
//! setting: with it on, every store gets a fuel budget.
//!
//! The ticker stops when the last clone of the `Runtime` (including those
//! held by modules and applications) is dropped.
//!
//! **Profiling guests.** With `WEIR_PERF_MAP` set in the environment, the
//! engine writes `/tmp/perf-<pid>.map`, so `perf report` names the guests'
//! compiled functions instead of showing bare addresses.

use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings;
use super::chunker::JobData;
use super::consumer_host::ConsumerData;
use super::loader::{CacheOutcome, ComponentCache, ModuleDigest};
use super::metrics::RuntimeMetrics;
use super::state::{CallStyle, link_wasi};
use super::{ChunkerModule, ConsumerModule, RuntimeError};
use crate::limits;

/// The environment variable that turns on the perf map (module docs).
const PERF_MAP_VAR: &str = "WEIR_PERF_MAP";

/// Engine-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Period of the epoch ticker: the granularity of deadlines.
    pub epoch_tick: Duration,
    /// Enable fuel metering (needed for `GuestLimits::fuel_per_call`).
    pub fuel: bool,
    /// Folder for compiled components (`*.cwasm`); `None` keeps them in
    /// memory only.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            epoch_tick: Duration::from_millis(limits::DEFAULT_EPOCH_TICK_MS),
            fuel: false,
            cache_dir: None,
        }
    }
}

/// The wasm runtime. Cheap to clone; see the module docs.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: RuntimeConfig,
    cache: ComponentCache,
    consumer_linker: Linker<ConsumerData>,
    chunker_linker: Linker<JobData>,
    metrics: RuntimeMetrics,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Creates the engine, starts the epoch ticker and links both worlds.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        if config.epoch_tick.is_zero() {
            return Err(RuntimeError::Config(
                "the epoch tick must be positive".into(),
            ));
        }
        let mut wasm_config = Config::new();
        wasm_config.wasm_component_model(true);
        wasm_config.epoch_interruption(true);
        wasm_config.consume_fuel(config.fuel);
        // Profiling aid, off unless asked for (see the module docs).
        if std::env::var_os(PERF_MAP_VAR).is_some() {
            wasm_config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine =
            Engine::new(&wasm_config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let cache = ComponentCache::new(&engine, config.cache_dir.clone())?;
        let link_error = |e: wasmtime::Error| RuntimeError::Engine(format!("linking: {e:#}"));

        let mut consumer_linker = Linker::new(&engine);
        link_wasi(&mut consumer_linker, CallStyle::Async).map_err(link_error)?;
        bindings::consumer::Consumer::add_to_linker::<ConsumerData, HasSelf<ConsumerData>>(
            &mut consumer_linker,
            |data| data,
        )
        .map_err(link_error)?;

        let mut chunker_linker = Linker::new(&engine);
        link_wasi(&mut chunker_linker, CallStyle::Sync).map_err(link_error)?;
        bindings::chunker::Chunker::add_to_linker::<JobData, HasSelf<JobData>>(
            &mut chunker_linker,
            |data| data,
        )
        .map_err(link_error)?;

        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                config,
                cache,
                consumer_linker,
                chunker_linker,
                metrics: RuntimeMetrics::default(),
                _ticker: ticker,
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Guest-call metrics of every module run by this runtime.
    pub fn metrics(&self) -> &RuntimeMetrics {
        &self.inner.metrics
    }

    /// The compiled component of `wasm` (compiled at most once; see
    /// [`loader`](super::loader)).
    pub fn compile(
        &self,
        wasm: &[u8],
    ) -> Result<(ModuleDigest, Component, CacheOutcome), RuntimeError> {
        let started = std::time::Instant::now();
        let (digest, component, outcome) = self.inner.cache.load(&self.inner.engine, wasm)?;
        if outcome != CacheOutcome::Memory {
            tracing::debug!(module = %digest.short(), ?outcome, elapsed = ?started.elapsed(), "component loaded");
        }
        Ok((digest, component, outcome))
    }

    /// Compiles and links a consumer component. See [`ConsumerModule`].
    pub fn consumer_module(&self, wasm: &[u8]) -> Result<ConsumerModule, RuntimeError> {
        ConsumerModule::new(self, wasm)
    }

    /// Compiles and links a chunker component. See [`ChunkerModule`].
    pub fn chunker_module(&self, wasm: &[u8]) -> Result<ChunkerModule, RuntimeError> {
        ChunkerModule::new(self, wasm)
    }

    /// Epoch ticks to set as a store's deadline so that it expires no
    /// earlier than `deadline` (and at most one tick later).
    pub fn deadline_ticks(&self, deadline: Duration) -> u64 {
        let tick = self.inner.config.epoch_tick.as_nanos().max(1);
        let ticks = deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks)
            .unwrap_or(u64::MAX / 2)
            .saturating_add(1)
    }

    pub(crate) fn consumer_linker(&self) -> &Linker<ConsumerData> {
        &self.inner.consumer_linker
    }

    pub(crate) fn chunker_linker(&self) -> &Linker<JobData> {
        &self.inner.chunker_linker
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The thread that advances the engine's epoch. Dropping it stops the
/// thread (the channel's sender goes away) and joins it.
struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Result<EpochTicker, RuntimeError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                // recv_timeout is the sleep; a dropped sender ends the loop.
                // Ticks fall on a fixed grid (start + n × tick): sleeping a
                // whole tick after each wake-up would add every wake-up's
                // delay to a deadline of many ticks.
                let mut next = std::time::Instant::now() + tick;
                loop {
                    let wait = next.saturating_duration_since(std::time::Instant::now());
                    match stopped.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => engine.increment_epoch(),
                        _ => break,
                    }
                    next += tick;
                    // After a long stall (a suspended process), catch up at
                    // once rather than firing the missed ticks in a burst.
                    let now = std::time::Instant::now();
                    if next + tick < now {
                        next = now + tick;
                    }
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(EpochTicker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread only sleeps and increments; it cannot panic.
            let _ = thread.join();
        }
    }
}
