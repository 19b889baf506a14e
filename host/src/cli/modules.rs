//! `weir modules`: push consumer components to a running server and list
//! them, by content digest.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::protocol::weir::modules_client::ModulesClient;
use crate::protocol::weir::{ListModulesRequest, PushModuleRequest};
use crate::service::endpoint::endpoint_url;

/// Push and list consumer modules (WASM components) on a server.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir modules push --broker 127.0.0.1:8080 target/summer.wasm
  weir modules list --broker 127.0.0.1:8080")]
pub struct ModulesCommand {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a component against the consumer world and store it; prints its digest.
    Push {
        /// The server address.
        #[arg(long, value_name = "ADDR")]
        broker: String,
        /// The component file.
        file: PathBuf,
    },
    /// List stored modules.
    List {
        /// The server address.
        #[arg(long, value_name = "ADDR")]
        broker: String,
    },
}

impl ModulesCommand {
    /// Runs the chosen subcommand.
    pub async fn execute(self) -> Result<()> {
        match self.command {
            Command::Push { broker, file } => {
                let component =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let mut client = ModulesClient::connect(endpoint_url(&broker)?)
                    .await
                    .with_context(|| format!("connecting to {broker}"))?
                    .max_encoding_message_size(component.len() + 1024);
                let pushed = client
                    .push(PushModuleRequest { component })
                    .await
                    .map_err(|status| anyhow::anyhow!("{}", status.message()))
                    .with_context(|| format!("pushing {}", file.display()))?
                    .into_inner();
                let what = if pushed.created {
                    "stored"
                } else {
                    "already stored"
                };
                println!("{} {what}", pushed.digest);
                Ok(())
            }
            Command::List { broker } => {
                let mut client = ModulesClient::connect(endpoint_url(&broker)?)
                    .await
                    .with_context(|| format!("connecting to {broker}"))?;
                let listed = client
                    .list(ListModulesRequest {})
                    .await
                    .map_err(|status| anyhow::anyhow!("{}", status.message()))?
                    .into_inner();
                println!("{:64}  {:>10}", "DIGEST", "BYTES");
                for module in listed.modules {
                    println!("{:64}  {:>10}", module.digest, module.size_bytes);
                }
                Ok(())
            }
        }
    }
}
