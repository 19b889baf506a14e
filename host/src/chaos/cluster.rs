//! The processes of a chaos run: the servers (`weir serve` as one process
//! or as a broker and a consumer host) and the chunker (`weir stream-sum
//! --streams -1` against them), with their data directories, ports and logs.
//!
//! Guarantees:
//! - A restart reuses the process's data directory and port, retrying a
//!   port that another socket holds for a moment
//!   ([`limits::CHAOS_RESTART_ATTEMPTS`]).
//! - Every chunker incarnation gets its own stream seed (derived from the
//!   run's seed), so a restarted chunker never reuses a stream id of a
//!   previous one: it is a new producer with new streams.
//! - A [`ClusterError`] names the log file to read.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::{Process, ProcessError, ProcessSpec};
use super::schedule::{Target, Topology};
use crate::limits;

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Controlling a child failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A process did not get ready.
    #[error("{name} did not start: {reason} (log: {})", log.display())]
    NotReady {
        /// The process.
        name: String,
        /// What happened.
        reason: String,
        /// Its log.
        log: PathBuf,
    },
    /// A directory could not be created.
    #[error("creating {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What the processes run.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The `weir` executable.
    pub exe: PathBuf,
    /// The run directory: data directories and `logs/`.
    pub dir: PathBuf,
    /// Split or whole.
    pub topology: Topology,
    /// Chunk partitions.
    pub partitions: u32,
    /// Chunker workers.
    pub workers: u32,
    /// Data chunks per stream.
    pub chunks: u32,
    /// The run's seed.
    pub seed: u64,
}

/// A running server: its process and where it serves.
#[derive(Debug)]
pub struct Server {
    /// The current incarnation.
    pub process: Process,
    /// The address it listens on (kept across restarts).
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `spec` listening on `listen` and waits for its "weir serving
    /// on" line; a process that exits first (a port still held) is started
    /// again, up to [`limits::CHAOS_RESTART_ATTEMPTS`] times.
    async fn start(
        spec: &ProcessSpec,
        listen: &str,
        incarnation: u32,
    ) -> Result<Server, ClusterError> {
        let mut spec = spec.clone();
        set_listen(&mut spec.args, listen);
        let mut attempt = 1;
        loop {
            let mut process = Process::spawn(&spec, incarnation).await?;
            let timeout = Duration::from_millis(limits::CHAOS_START_TIMEOUT_MS);
            let addr = process
                .wait_line(timeout, |line| {
                    line.strip_prefix("weir serving on ")
                        .and_then(|addr| addr.trim().parse::<SocketAddr>().ok())
                })
                .await;
            if let Some(addr) = addr {
                return Ok(Server { process, addr });
            }
            let status = process.wait_exit(Duration::from_secs(1)).await?;
            if status.is_none() {
                process.kill().await?;
                return Err(ClusterError::NotReady {
                    name: spec.name.clone(),
                    reason: format!("not serving within {timeout:?}"),
                    log: spec.log.clone(),
                });
            }
            if attempt >= limits::CHAOS_RESTART_ATTEMPTS {
                return Err(ClusterError::NotReady {
                    name: spec.name.clone(),
                    reason: format!(
                        "exited before serving, {attempt} times (last: {})",
                        status.map_or_else(String::new, |s| s.to_string())
                    ),
                    log: spec.log.clone(),
                });
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The `--data-dir` the server runs with, from its spec.
    pub fn data_dir(&self) -> Option<PathBuf> {
        let args = &self.process.spec().args;
        let at = args.iter().position(|arg| arg == "--data-dir")?;
        args.get(at + 1).map(PathBuf::from)
    }

    /// Starts the next incarnation on the same data directory and port
    /// (the current one must have exited).
    pub async fn restart(&mut self) -> Result<(), ClusterError> {
        let next = self.process.incarnation() + 1;
        let spec = self.process.spec().clone();
        *self = Server::start(&spec, &self.addr.to_string(), next).await?;
        Ok(())
    }
}

/// Replaces the value of `--listen` in `args`.
fn set_listen(args: &mut [OsString], listen: &str) {
    if let Some(at) = args.iter().position(|arg| arg == "--listen")
        && let Some(value) = args.get_mut(at + 1)
    {
        *value = listen.into();
    }
}

/// The processes of a run.
#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    /// The broker (in the whole topology: the one server).
    pub broker: Server,
    /// The consumer host (split topology only).
    pub consumer: Option<Server>,
    /// The chunker's current incarnation.
    pub chunker: Process,
    /// Consumer hosts created so far (a takeover adds one).
    consumer_hosts: u32,
}

impl Cluster {
    /// Starts the servers, then the chunker (which creates the journals,
    /// pushes the summer and applies the shards), and waits for its banner.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let logs = config.dir.join("logs");
        create_dir(&logs)?;
        let any_port = "127.0.0.1:0";
        let (broker, consumer) = match config.topology {
            Topology::Whole => {
                let spec = server_spec(&config, "server", &[]);
                (Server::start(&spec, any_port, 1).await?, None)
            }
            Topology::Split => {
                let spec = server_spec(&config, "broker", &["--role", "broker"]);
                let broker = Server::start(&spec, any_port, 1).await?;
                let consumer =
                    Server::start(&consumer_spec(&config, 1, broker.addr), any_port, 1).await?;
                (broker, Some(consumer))
            }
        };
        let chunker = start_chunker(
            &config,
            broker.addr,
            consumer.as_ref().map(|consumer| consumer.addr),
            1,
        )
        .await?;
        Ok(Cluster {
            config,
            broker,
            consumer,
            chunker,
            consumer_hosts: 1,
        })
    }

    /// The run's configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The broker's address.
    pub fn broker_addr(&self) -> String {
        self.broker.addr.to_string()
    }

    /// The consumer host's address.
    pub fn consumer_addr(&self) -> String {
        self.consumer
            .as_ref()
            .unwrap_or(&self.broker)
            .addr
            .to_string()
    }

    /// The broker's own data directory: `broker/` under the data directory
    /// of the server that runs it (where `weir serve` opens its broker, in
    /// either topology).
    pub fn broker_data_dir(&self) -> Option<PathBuf> {
        self.broker.data_dir().map(|dir| dir.join(BROKER_SUBDIR))
    }

    /// The server hosting `target` (`None` for the chunker).
    pub fn server(&mut self, target: Target) -> Option<&mut Server> {
        match (target, self.consumer.as_mut()) {
            (Target::Chunker, _) => None,
            (Target::Consumer, Some(consumer)) => Some(consumer),
            (Target::Broker | Target::Consumer, _) => Some(&mut self.broker),
        }
    }

    /// The servers, for end-of-run checks.
    pub fn servers(&mut self) -> Vec<&mut Server> {
        let mut servers = vec![&mut self.broker];
        if let Some(consumer) = self.consumer.as_mut() {
            servers.push(consumer);
        }
        servers
    }

    /// Every process: the servers and the chunker.
    pub fn processes(&mut self) -> Vec<&mut Process> {
        let mut all = vec![&mut self.broker.process];
        if let Some(consumer) = self.consumer.as_mut() {
            all.push(&mut consumer.process);
        }
        all.push(&mut self.chunker);
        all
    }

    /// Starts chunker incarnation `incarnation` against the current
    /// servers and waits until its setup is done (its banner).
    pub async fn start_chunker(&self, incarnation: u32) -> Result<Process, ClusterError> {
        let consumer = self.consumer.as_ref().map(|consumer| consumer.addr);
        start_chunker(&self.config, self.broker.addr, consumer, incarnation).await
    }

    /// Starts a new consumer host (new data directory, new port) against
    /// the broker, for a takeover; the caller moves the shards to it.
    pub async fn start_new_consumer(&mut self) -> Result<Server, ClusterError> {
        self.consumer_hosts += 1;
        let spec = consumer_spec(&self.config, self.consumer_hosts, self.broker.addr);
        Server::start(&spec, "127.0.0.1:0", 1).await
    }
}

/// The subdirectory of `weir serve --data-dir` holding the broker's journals
/// (see `service::server`).
const BROKER_SUBDIR: &str = "broker";

/// Starts chunker incarnation `incarnation` and waits for its banner,
/// which it prints once the journals, the module and the shards are set up.
async fn start_chunker(
    config: &ClusterConfig,
    broker: SocketAddr,
    consumer: Option<SocketAddr>,
    incarnation: u32,
) -> Result<Process, ClusterError> {
    let spec = chunker_spec(config, broker, consumer);
    let spec = ProcessSpec {
        args: with_seed(spec.args, chunker_seed(config.seed, incarnation)),
        ..spec
    };
    let mut chunker = Process::spawn(&spec, incarnation).await?;
    let timeout = Duration::from_millis(limits::CHAOS_START_TIMEOUT_MS);
    let ready = chunker
        .wait_line(timeout, |line| {
            (line.starts_with("stream-sum: ") && line.contains(" partitions on ")).then_some(())
        })
        .await;
    if ready.is_none() {
        let status = chunker.kill().await?;
        return Err(ClusterError::NotReady {
            name: spec.name,
            reason: format!("no banner within {timeout:?} ({status})"),
            log: spec.log,
        });
    }
    Ok(chunker)
}

/// A chunker incarnation's stream seed: distinct per incarnation, fixed
/// per run seed.
pub fn chunker_seed(seed: u64, incarnation: u32) -> u64 {
    seed ^ u64::from(incarnation).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn create_dir(path: &Path) -> Result<(), ClusterError> {
    std::fs::create_dir_all(path).map_err(|source| ClusterError::Dir {
        path: path.to_path_buf(),
        source,
    })
}

fn server_spec(config: &ClusterConfig, name: &str, extra: &[&str]) -> ProcessSpec {
    let mut args: Vec<OsString> = vec![
        "serve".into(),
        "--data-dir".into(),
        config.dir.join(name).into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    ProcessSpec {
        name: name.to_string(),
        exe: config.exe.clone(),
        args,
        log: config.dir.join("logs").join(format!("{name}.log")),
    }
}

fn consumer_spec(config: &ClusterConfig, host: u32, broker: SocketAddr) -> ProcessSpec {
    let name = format!("consumer-{host}");
    let broker = broker.to_string();
    server_spec(config, &name, &["--role", "consumer", "--broker", &broker])
}

fn chunker_spec(
    config: &ClusterConfig,
    broker: SocketAddr,
    consumer: Option<SocketAddr>,
) -> ProcessSpec {
    let mut args: Vec<OsString> = vec![
        "stream-sum".into(),
        "--broker".into(),
        broker.to_string().into(),
    ];
    if let Some(consumer) = consumer {
        args.extend(["--consumer".into(), consumer.to_string().into()]);
    }
    args.extend([
        "--partitions".into(),
        config.partitions.to_string().into(),
        "--streams".into(),
        "-1".into(),
        "--chunks".into(),
        config.chunks.to_string().into(),
        "--workers".into(),
        config.workers.to_string().into(),
    ]);
    ProcessSpec {
        name: "chunker".to_string(),
        exe: config.exe.clone(),
        args,
        log: config.dir.join("logs").join("chunker.log"),
    }
}

fn with_seed(mut args: Vec<OsString>, seed: u64) -> Vec<OsString> {
    args.extend(["--seed".into(), seed.to_string().into()]);
    args
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn each_chunker_incarnation_gets_its_own_seed() {
        let seeds: std::collections::HashSet<u64> = (1..100)
            .map(|incarnation| chunker_seed(42, incarnation))
            .collect();
        assert_eq!(seeds.len(), 99);
        assert_eq!(chunker_seed(42, 3), chunker_seed(42, 3));
    }

    #[test]
    fn a_restart_listens_on_the_given_address() {
        let config = ClusterConfig {
            exe: "weir".into(),
            dir: "/run".into(),
            topology: Topology::Split,
            partitions: 4,
            workers: 4,
            chunks: 3,
            seed: 1,
        };
        let mut spec = consumer_spec(&config, 2, "127.0.0.1:9000".parse().unwrap());
        set_listen(&mut spec.args, "127.0.0.1:9001");
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "serve",
                "--data-dir",
                "/run/consumer-2",
                "--listen",
                "127.0.0.1:9001",
                "--role",
                "consumer",
                "--broker",
                "127.0.0.1:9000"
            ]
        );
        assert_eq!(spec.log, Path::new("/run/logs/consumer-2.log"));
    }

    #[test]
    fn the_broker_s_journals_are_under_its_server_s_data_directory() {
        let config = ClusterConfig {
            exe: "weir".into(),
            dir: "/run".into(),
            topology: Topology::Whole,
            partitions: 4,
            workers: 4,
            chunks: 3,
            seed: 1,
        };
        let spec = server_spec(&config, "server", &[]);
        let at = spec
            .args
            .iter()
            .position(|arg| arg == "--data-dir")
            .unwrap();
        assert_eq!(
            Path::new(&spec.args[at + 1]).join(BROKER_SUBDIR),
            Path::new("/run/server/broker")
        );
    }
}
