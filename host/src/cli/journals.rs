//! `weir journals`: create, apply, list, append to and read journals, of a
//! local data directory (`--data-dir`, through the embedded
//! [`Broker`](crate::broker::Broker)) or of a running server (`--broker`).
//!
//! With `--data-dir` each command opens the directory (taking its lock, so
//! it fails while a running host owns it), does one thing, and shuts the
//! broker down. An append reads all of stdin and commits it as **one atomic
//! append**; its committed range is printed once it is durable. `apply -f`
//! takes gazctl's YAML and applies every change atomically, or none.

use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::specs_yaml::{JournalApply, parse_journals};
use super::target::Target;
use crate::broker::revision::{ApplyOutcome, ExpectRevision};
use crate::broker::{
    AppendRequest, JournalChange, JournalSpec, LabelSelector, LabelSet, ReadRequest,
};

/// Create, list, append to and read journals.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  weir journals create --data-dir ./data examples/greetings --label content-type=text/plain
  echo hello | weir journals append --data-dir ./data examples/greetings
  weir journals read --data-dir ./data examples/greetings --offset 0
  weir journals list --data-dir ./data --selector 'prefix=examples/'
  weir journals list --broker 127.0.0.1:8080
  weir journals apply --broker 127.0.0.1:8080 -f journals.yaml")]
pub struct JournalsCommand {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a journal.
    #[command(after_help = "Examples:
  weir journals create --data-dir ./data examples/stream-sum/chunks/part-000 \\
      --label app.gazette.dev/message-type=stream_sum.Chunk \\
      --label content-type=application/x-ndjson")]
    Create(CreateArgs),
    /// Apply journal specs from a gazctl YAML file, atomically.
    #[command(
        after_help = "The file is a tree of nodes as gazctl takes it: a name ending in / is a
directory whose fields its children inherit; `delete: true` deletes; `revision: N`
applies only if the journal's mod revision is N (0: it must not exist).

Examples:
  weir journals apply --broker 127.0.0.1:8080 -f journals.yaml
  weir journals apply --data-dir ./data -f journals.yaml"
    )]
    Apply(ApplyArgs),
    /// List journals, optionally selected by labels.
    #[command(
        after_help = "Selectors: a=b, a!=b, a in (x,y), a notin (x,y), a (exists), !a,
and the meta-labels name=<journal> and prefix=<dir/>.

Examples:
  weir journals list --data-dir ./data
  weir journals list --data-dir ./data --selector 'app.gazette.dev/message-type=stream_sum.Chunk'
  weir journals list --data-dir ./data --selector 'prefix=examples/stream-sum/'"
    )]
    List(ListArgs),
    /// Append all of stdin to a journal, atomically; prints the committed range.
    #[command(after_help = "Examples:
  echo '{\"hello\":1}' | weir journals append --data-dir ./data examples/greetings
  weir journals append --data-dir ./data examples/greetings < records.ndjson")]
    Append(AppendArgs),
    /// Write a journal's bytes to stdout.
    #[command(after_help = "Examples:
  weir journals read --data-dir ./data examples/greetings
  weir journals read --data-dir ./data examples/greetings --offset 100 --end 200
  weir journals read --data-dir ./data examples/greetings --offset -1 --block   # tail")]
    Read(ReadArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    target: Target,
    /// Journal name, e.g. examples/greetings.
    name: String,
    /// A label, as NAME=VALUE (repeatable).
    #[arg(long = "label", value_name = "NAME=VALUE")]
    labels: Vec<String>,
    /// Spool roll target in bytes (default: the broker's).
    #[arg(long, value_name = "BYTES")]
    fragment_length: Option<u64>,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    #[command(flatten)]
    target: Target,
    /// The YAML file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    target: Target,
    /// Label selector (empty: every journal).
    #[arg(long, default_value = "")]
    selector: String,
}

#[derive(Debug, Args)]
struct AppendArgs {
    #[command(flatten)]
    target: Target,
    /// Journal name.
    name: String,
}

#[derive(Debug, Args)]
struct ReadArgs {
    #[command(flatten)]
    target: Target,
    /// Journal name.
    name: String,
    /// Offset to start at; -1 is the write head.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    offset: i64,
    /// Offset to stop before (default: no end).
    #[arg(long, value_name = "OFFSET")]
    end: Option<i64>,
    /// Wait at the write head for new appends instead of stopping.
    #[arg(long)]
    block: bool,
}

impl JournalsCommand {
    /// Runs the chosen subcommand.
    pub async fn execute(self) -> anyhow::Result<()> {
        match self.command {
            Command::Create(args) => create(args).await,
            Command::Apply(args) => apply(args).await,
            Command::List(args) => list(args).await,
            Command::Append(args) => append(args).await,
            Command::Read(args) => read(args).await,
        }
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let labels: LabelSet = args.labels.join(",").parse().context("parsing --label")?;
    let mut spec = JournalSpec::new(args.name.clone()).with_labels(labels);
    spec.fragment_length = args.fragment_length.unwrap_or(0);
    spec.validate()?;
    let journals = args.target.open().await?;
    let result = async {
        match journals
            .apply_expecting(vec![(JournalChange::Upsert(spec), ExpectRevision::Absent)])
            .await?
        {
            ApplyOutcome::Applied { .. } => {
                println!("created {}", args.name);
                Ok(())
            }
            ApplyOutcome::RevisionMismatch { .. } => bail!("journal {} already exists", args.name),
        }
    }
    .await;
    journals.close().await;
    result
}

async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let changes = parse_journals(&yaml)
        .with_context(|| format!("in {}", args.file.display()))?
        .into_iter()
        .map(|change| {
            let (change, revision) = match change {
                JournalApply::Upsert {
                    spec,
                    expect_mod_revision,
                } => (JournalChange::Upsert(spec), expect_mod_revision),
                JournalApply::Delete {
                    name,
                    expect_mod_revision,
                } => (JournalChange::Delete(name), expect_mod_revision),
            };
            let expect = ExpectRevision::from_wire(revision).map_err(|reason| {
                let name = match &change {
                    JournalChange::Upsert(spec) => &spec.name,
                    JournalChange::Delete(name) => name,
                };
                anyhow::anyhow!("journal {name}: revision {reason}")
            })?;
            anyhow::Ok((change, expect))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let count = changes.len();
    let journals = args.target.open().await?;
    let result = journals.apply_expecting(changes).await;
    journals.close().await;
    match result? {
        ApplyOutcome::Applied { revision } => {
            println!("applied {count} changes (revision {revision})");
            Ok(())
        }
        ApplyOutcome::RevisionMismatch {
            journal,
            expected,
            actual,
        } => bail!(
            "nothing applied: journal {journal} expected revision {expected:?}, is {actual:?}"
        ),
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let selector: LabelSelector = args.selector.parse().context("parsing --selector")?;
    let journals = args.target.open().await?;
    let result = async {
        let specs = journals.client().list(&selector).await?;
        let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(0).max(4);
        println!("{:width$}  {:>12}  LABELS", "NAME", "HEAD");
        for spec in specs {
            let head = match journals.write_head(&spec.name).await {
                Ok(head) => head.to_string(),
                Err(err) => format!("({err})"),
            };
            println!("{:width$}  {head:>12}  {}", spec.name, spec.labels);
        }
        Ok(())
    }
    .await;
    journals.close().await;
    result
}

async fn append(args: AppendArgs) -> anyhow::Result<()> {
    let mut content = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut content)
        .await
        .context("reading stdin")?;
    let journals = args.target.open().await?;
    let request = AppendRequest {
        journal: args.name.clone(),
        content: Bytes::from(content),
        ..Default::default()
    };
    let result = journals.client().append(request).await;
    journals.close().await;
    let response = result.with_context(|| format!("appending to {}", args.name))?;
    println!("begin={} end={}", response.begin, response.end);
    Ok(())
}

async fn read(args: ReadArgs) -> anyhow::Result<()> {
    let journals = args.target.open().await?;
    let request = ReadRequest {
        journal: args.name.clone(),
        offset: args.offset,
        block: args.block,
        end_offset: args.end.unwrap_or(0),
    };
    let result = async {
        let mut stream = journals.client().read(request).await?;
        let mut stdout = tokio::io::stdout();
        loop {
            let chunk = tokio::select! {
                chunk = stream.next() => chunk?,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(chunk) = chunk else { break };
            match stdout
                .write_all(&chunk.content)
                .await
                .and(stdout.flush().await)
            {
                Ok(()) => {}
                // A closed pipe (`| head`) ends the read normally.
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => break,
                Err(err) => return Err(err).context("writing stdout"),
            }
        }
        Ok(())
    }
    .await;
    journals.close().await;
    result.with_context(|| format!("reading {}", args.name))
}
