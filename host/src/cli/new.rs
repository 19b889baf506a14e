//! `weir new consumer --lang rust|python|js|c DIR`: writes a consumer
//! project into DIR (a new or empty folder) from weir's tested stream-sum
//! summer in that language, and prints the commands that build and test it
//! (see [`crate::template`]).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::template::{self, Lang};

/// Start a new project from a template.
#[derive(Debug, Args)]
pub struct NewCommand {
    #[command(subcommand)]
    what: NewWhat,
}

#[derive(Debug, Subcommand)]
enum NewWhat {
    /// A consumer component: the stream-sum summer as a starting point, with
    /// its build script, the WIT package and a fixture for `weir test`.
    #[command(after_help = "Examples:\n  \
        weir new consumer --lang rust my-consumer\n  \
        cd my-consumer && ./build.sh consumer.wasm\n  \
        weir test consumer.wasm --input fixtures/chunks.jsonl \
        --expect fixtures/chunks.expected.jsonl --crash-every 3")]
    Consumer(NewConsumer),
}

#[derive(Debug, Args)]
struct NewConsumer {
    /// The guest's language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The project folder: created if missing; an existing one must be empty.
    dir: PathBuf,
}

impl NewCommand {
    /// Writes the project and prints what to run next.
    pub async fn execute(self) -> Result<()> {
        let NewWhat::Consumer(args) = self.what;
        let generated = template::generate(args.lang, &args.dir)?;
        println!(
            "created {} ({} files): a {} consumer, the stream-sum summer as a starting point; \
             see its README.md",
            generated.dir.display(),
            generated.files.len(),
            args.lang,
        );
        println!("build and test it:");
        println!(
            "  cd {} && {}",
            shell_word(&generated.dir),
            template::build_command()
        );
        println!("  {}", template::test_command());
        Ok(())
    }
}

/// `path` as one shell word: as is when plain, else single-quoted.
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_word(Path::new("my-consumer")), "my-consumer");
        assert_eq!(shell_word(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
    }
}
