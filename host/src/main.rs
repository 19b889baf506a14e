//! The `weir` binary: parses arguments and dispatches; everything else lives
//! in the library's `cli` module.

use clap::Parser;

fn main() -> std::process::ExitCode {
    weir::cli::Cli::parse().run()
}
