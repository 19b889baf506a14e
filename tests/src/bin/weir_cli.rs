//! The `weir` command line, built inside the test package so that the
//! integration tests can run it as a real process (`CARGO_BIN_EXE_weir_cli`).

fn main() -> std::process::ExitCode {
    use clap::Parser;
    weir::cli::Cli::parse().run()
}
