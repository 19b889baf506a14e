//! `weir serve`: run the broker, the consumer host, or both, as a gRPC
//! server (see [`service::server`](crate::service::server)).
//!
//! SIGTERM or Ctrl-C stops it gracefully: running transactions commit, open
//! calls end, the data directory is left consistent. SIGKILL loses nothing
//! that was acknowledged; starting it again on the same data directory
//! recovers every journal and shard.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::service::server::{Role, ServeConfig, Server};

/// Run weir as a server.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir serve --data-dir ./data                              # broker + consumer host on 127.0.0.1:8080
  weir serve --data-dir ./b --role broker --listen 127.0.0.1:8080
  weir serve --data-dir ./c --role consumer --listen 127.0.0.1:8081 --broker 127.0.0.1:8080
  curl http://127.0.0.1:8080/metrics")]
pub struct ServeCommand {
    /// Data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Address to listen on (gRPC, and /metrics over HTTP/1.1).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// What this process runs.
    #[arg(long, value_enum, default_value_t = RoleArg::All)]
    role: RoleArg,
    /// The broker to use (`--role consumer` only).
    #[arg(long, value_name = "ADDR")]
    broker: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    /// The broker and the consumer host.
    All,
    /// Journals only.
    Broker,
    /// Shards and modules, using `--broker`.
    Consumer,
}

impl ServeCommand {
    /// Serves until SIGTERM or Ctrl-C.
    pub async fn execute(self) -> anyhow::Result<()> {
        let role = match (self.role, self.broker) {
            (RoleArg::All, None) => Role::All,
            (RoleArg::Broker, None) => Role::Broker,
            (RoleArg::Consumer, Some(broker)) => Role::Consumer { broker },
            (RoleArg::Consumer, None) => bail!("--role consumer needs --broker ADDR"),
            (_, Some(_)) => bail!("--broker is only for --role consumer"),
        };
        let server = Server::start(ServeConfig {
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            role,
        })
        .await
        .with_context(|| format!("starting weir on {}", self.listen))?;
        // Tests and scripts read this line to learn the port.
        println!("weir serving on {}", server.local_addr());
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("weir: stopping");
        server.shutdown().await;
        eprintln!("weir: stopped");
        Ok(())
    }
}
