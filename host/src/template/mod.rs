//! Consumer templates (`weir new consumer --lang rust|python|js|c DIR`): a
//! project folder holding a guest that builds with its own `./build.sh` and
//! passes `weir test` on the bundled fixture as generated.
//!
//! Every template is the stream-sum summer that weir itself builds and tests
//! in that language — Rust `guest-summer/`, Python, JavaScript and C
//! `guests/*-summer/` — with the WIT package and the sandbox fixture. The
//! sources are embedded at compile time ([`files`]), never kept twice, so a
//! template cannot drift from the tested guest. The only rewrites: the Rust
//! crate's WIT path (`"../wit"` becomes `"wit"`, checked to happen exactly
//! once) and what exists only here (the Rust `Cargo.toml`, `build.sh` and
//! `.gitignore`, every project's README).
//!
//! Guarantees of [`generate`]: it writes only into a folder that is missing
//! or empty (anything else is refused before a byte is written); files are
//! created, never overwritten; on a failure halfway it removes what it
//! created, so a folder is either complete or as it was.

mod files;

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use files::Embedded;

/// The component every template's README builds and tests.
pub const OUTPUT_WASM: &str = "consumer.wasm";

/// The fixture input and expected output, inside a generated project.
pub const FIXTURE_INPUT: &str = "fixtures/chunks.jsonl";
/// See [`FIXTURE_INPUT`].
pub const FIXTURE_EXPECTED: &str = "fixtures/chunks.expected.jsonl";

/// The WIT path in `guest-summer/src/lib.rs` (its crate sits beside `wit/`)
/// and its replacement in a generated crate (which holds `wit/`).
const RUST_WIT_PATH: (&str, &str) = ("\"../wit\"", "\"wit\"");

/// A template's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, a standalone crate (wit-bindgen, `cargo build --target wasm32-wasip2`).
    Rust,
    /// Python (componentize-py from PyPI).
    Python,
    /// JavaScript (componentize-qjs from npm).
    Js,
    /// C (Debian's clang-19 and wasi-libc, `wit-bindgen c`, `wasm-tools`).
    C,
}

impl Lang {
    /// Every language, in the order of `--help`.
    pub const ALL: [Lang; 4] = [Lang::Rust, Lang::Python, Lang::Js, Lang::C];

    /// The name `--lang` takes.
    pub fn arg(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
            Lang::C => "C",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arg())
    }
}

/// Why a project was not generated.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The target folder exists and holds something.
    #[error("{} is not empty: `weir new` writes only into a new or empty folder", .0.display())]
    NotEmpty(PathBuf),
    /// The target path exists and is not a folder.
    #[error("{} exists and is not a folder", .0.display())]
    NotAFolder(PathBuf),
    /// An embedded source no longer has the shape the generator rewrites.
    #[error("the embedded template is inconsistent: {0}")]
    Inconsistent(String),
    /// Reading or writing the file system failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

impl TemplateError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TemplateError {
        let path = path.to_path_buf();
        move |source| TemplateError::Io {
            action,
            path,
            source,
        }
    }
}

/// One file of a project: its path relative to the project folder, its
/// text, and whether it is a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFile {
    /// Relative path, `/`-separated.
    pub path: Cow<'static, str>,
    /// The file's text.
    pub text: Cow<'static, str>,
    /// Written with execute permission.
    pub executable: bool,
}

impl TemplateFile {
    fn embedded((path, text): Embedded) -> TemplateFile {
        TemplateFile {
            path: Cow::Borrowed(path),
            text: Cow::Borrowed(text),
            executable: path.ends_with(".sh"),
        }
    }

    fn generated(path: &'static str, text: String) -> TemplateFile {
        TemplateFile {
            executable: path.ends_with(".sh"),
            path: Cow::Borrowed(path),
            text: Cow::Owned(text),
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The project folder.
    pub dir: PathBuf,
    /// The project's name (the Rust package name).
    pub name: String,
    /// The files written, relative to `dir`.
    pub files: Vec<String>,
}

/// The files of `lang`'s project named `name` (a package name, see
/// [`project_name`]), in writing order.
pub fn files(lang: Lang, name: &str) -> Result<Vec<TemplateFile>, TemplateError> {
    let mut out: Vec<TemplateFile> = Vec::new();
    match lang {
        Lang::Rust => {
            out.push(TemplateFile::generated("Cargo.toml", rust_cargo_toml(name)));
            out.push(TemplateFile::embedded(files::RUST_TOOLCHAIN));
            out.push(TemplateFile::generated("build.sh", rust_build_sh(name)));
            out.push(TemplateFile::generated("src/lib.rs", rust_lib_rs()?));
            out.extend(files::RUST_SRC.into_iter().map(TemplateFile::embedded));
        }
        Lang::Python => out.extend(files::PYTHON.into_iter().map(TemplateFile::embedded)),
        Lang::Js => out.extend(files::JS.into_iter().map(TemplateFile::embedded)),
        Lang::C => out.extend(files::C.into_iter().map(TemplateFile::embedded)),
    }
    out.extend(files::WIT.into_iter().map(TemplateFile::embedded));
    out.extend(files::FIXTURES.into_iter().map(TemplateFile::embedded));
    out.push(TemplateFile::generated(".gitignore", gitignore(lang)));
    out.push(TemplateFile::generated("README.md", readme(lang, name)));
    Ok(out)
}

/// Writes `lang`'s project into `dir`, which must be missing or empty; on
/// an error, nothing of it is left behind.
pub fn generate(lang: Lang, dir: &Path) -> Result<Generated, TemplateError> {
    let name = project_name(dir);
    let files = files(lang, &name)?;
    let created = prepare_folder(dir)?;
    write_or_undo(dir, created.as_deref(), &files)?;
    Ok(Generated {
        dir: dir.to_path_buf(),
        name,
        files: files.iter().map(|file| file.path.to_string()).collect(),
    })
}

/// Writes `files` into the empty folder `dir`; on a failure, removes what
/// was written and `created`, the topmost folder [`prepare_folder`] made.
fn write_or_undo(
    dir: &Path,
    created: Option<&Path>,
    files: &[TemplateFile],
) -> Result<(), TemplateError> {
    write_files(dir, files).inspect_err(|_| {
        // Best effort: the write error is what the user needs to see.
        let _ = match created {
            Some(top) => std::fs::remove_dir_all(top),
            None => empty_folder(dir),
        };
    })
}

/// The project name for `dir`: its last component made into a valid Cargo
/// package name (lower-case ASCII letters, digits, `-` and `_`, starting with
/// a letter, not a reserved name), or `consumer` if nothing is left of it.
pub fn project_name(dir: &Path) -> String {
    // `.` or `x/..` name the folder they resolve to; a missing path is
    // resolved by its words alone.
    let resolved = std::fs::canonicalize(dir).ok().or_else(|| {
        let absolute = std::path::absolute(dir).ok()?;
        let mut lexical = PathBuf::new();
        for part in absolute.components() {
            match part {
                std::path::Component::ParentDir => {
                    lexical.pop();
                }
                std::path::Component::CurDir => {}
                other => lexical.push(other),
            }
        }
        Some(lexical)
    });
    let last = resolved
        .as_deref()
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    sanitize_name(&last)
}

fn sanitize_name(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let mut name: String = name
        .trim_matches(|c| c == '-' || c == '_')
        .chars()
        .take(64)
        .collect();
    name.truncate(name.trim_end_matches(['-', '_']).len());
    if name.is_empty() {
        return "consumer".to_string();
    }
    let reserved = RESERVED_NAMES.contains(&name.replace('-', "_").as_str());
    if reserved || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "consumer-");
    }
    name
}

/// Names Cargo refuses for a package or its library: Rust keywords, the
/// standard crates and its own artifact folders.
const RESERVED_NAMES: [&str; 63] = [
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "build",
    "const",
    "continue",
    "core",
    "crate",
    "deps",
    "do",
    "dyn",
    "else",
    "enum",
    "examples",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "incremental",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "union",
    "macro_rules",
    "raw",
];

/// Makes sure `dir` is an empty folder. Returns the topmost folder it had
/// to create (to remove on failure), or `None` if `dir` already existed.
fn prepare_folder(dir: &Path) -> Result<Option<PathBuf>, TemplateError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mut entries =
                std::fs::read_dir(dir).map_err(TemplateError::io("reading the folder", dir))?;
            if entries.next().is_some() {
                return Err(TemplateError::NotEmpty(dir.to_path_buf()));
            }
            Ok(None)
        }
        Ok(_) => Err(TemplateError::NotAFolder(dir.to_path_buf())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut top = dir.to_path_buf();
            while let Some(parent) = top.parent() {
                if parent.as_os_str().is_empty() || parent.exists() {
                    break;
                }
                top = parent.to_path_buf();
            }
            std::fs::create_dir_all(dir).map_err(TemplateError::io("creating the folder", dir))?;
            Ok(Some(top))
        }
        Err(err) => Err(TemplateError::io("reading", dir)(err)),
    }
}

/// Removes everything inside `dir` (which [`prepare_folder`] found empty).
fn empty_folder(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn write_files(dir: &Path, files: &[TemplateFile]) -> Result<(), TemplateError> {
    for file in files {
        let path = dir.join(&*file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(TemplateError::io("creating the folder", parent))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(if file.executable { 0o755 } else { 0o644 });
        }
        let mut out = options
            .open(&path)
            .map_err(TemplateError::io("creating", &path))?;
        out.write_all(file.text.as_bytes())
            .map_err(TemplateError::io("writing", &path))?;
    }
    Ok(())
}

/// `guest-summer/src/lib.rs` with the WIT path of a crate that holds `wit/`.
fn rust_lib_rs() -> Result<String, TemplateError> {
    let (from, to) = RUST_WIT_PATH;
    let (_, text) = files::RUST_LIB;
    let found = text.matches(from).count();
    if found != 1 {
        return Err(TemplateError::Inconsistent(format!(
            "guest-summer/src/lib.rs has {found} occurrences of {from} (the WIT path the \
             generator rewrites to {to}); it needs exactly one"
        )));
    }
    Ok(text.replacen(from, to, 1))
}

/// The Rust crate's dependencies, at the versions the workspace's guests
/// use (a test compares them with the workspace's `Cargo.toml`).
const RUST_DEPENDENCIES: [(&str, &str); 7] = [
    ("base64", "\"0.22\""),
    ("crc", "\"3.2\""),
    ("foldhash", "\"0.2\""),
    ("itoa", "\"1\""),
    ("serde", "{ version = \"1\", features = [\"derive\"] }"),
    ("serde_json", "\"1\""),
    ("wit-bindgen", "\"0.61\""),
];

/// The Rust crate's dev-dependencies (the document scanner's property tests).
const RUST_DEV_DEPENDENCIES: [(&str, &str); 1] = [("proptest", "\"1\"")];

fn rust_cargo_toml(name: &str) -> String {
    let deps = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(dep, version)| format!("{dep} = {version}\n"))
            .collect::<String>()
    };
    format!(
        "# A weir consumer component (wasm32-wasip2), made by `weir new consumer --lang rust`\n\
         # from weir's stream-sum summer. Build: ./build.sh; test: see README.md.\n\
         [package]\n\
         name = \"{name}\"\n\
         version = \"0.1.0\"\n\
         edition = \"2024\"\n\
         publish = false\n\
         \n\
         [lib]\n\
         crate-type = [\"cdylib\"]\n\
         \n\
         [dependencies]\n\
         {deps}\
         \n\
         [dev-dependencies]\n\
         {dev_deps}\
         \n\
         # A workspace of its own: never a member of an enclosing one.\n\
         [workspace]\n\
         \n\
         # Small, fast components.\n\
         [profile.release]\n\
         opt-level = 3\n\
         lto = true\n\
         codegen-units = 1\n\
         strip = true\n",
        deps = deps(&RUST_DEPENDENCIES),
        dev_deps = deps(&RUST_DEV_DEPENDENCIES),
    )
}

fn rust_build_sh(name: &str) -> String {
    let artifact = name.replace('-', "_");
    format!(
        r#"#!/usr/bin/env bash
# Builds this consumer into a weir component: ./build.sh [OUT.wasm]
# (default: {OUTPUT_WASM} here).
#
# Needs Rust from rustup: rust-toolchain.toml names the toolchain and the
# wasm32-wasip2 target, which rustup installs on first use; the first build
# downloads the crates from crates.io. Works from any directory.
# CARGO_TARGET_DIR moves cargo's build folder (default: target/ here).
set -euo pipefail

fail() {{ echo "{name} build: $*" >&2; exit 1; }}

# Relative paths are the caller's; resolve them before moving here (rustup
# reads rust-toolchain.toml from the current directory).
absolute() {{ case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }}
here=$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)
out=$(absolute "${{1:-$here/{OUTPUT_WASM}}}")
target=$(absolute "${{CARGO_TARGET_DIR:-$here/target}}")
cd "$here"

command -v cargo >/dev/null || fail "cargo not found; install Rust with rustup (https://rustup.rs)"
cargo build --release --target wasm32-wasip2 --target-dir "$target" ||
    fail "cargo build failed (see above)"

mkdir -p "$(dirname "$out")"
cp "$target/wasm32-wasip2/release/{artifact}.wasm" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out ($(stat -c %s "$out") bytes)"
"#
    )
}

fn gitignore(lang: Lang) -> String {
    let lines = match lang {
        Lang::Rust => "# cargo's build folder (build.sh).\n/target/\n",
        Lang::Python => {
            "# The venv with componentize-py, logs and stamps (build.sh).\n/build/\n__pycache__/\n"
        }
        Lang::Js => {
            "# npm's install of componentize-qjs, with build.sh's stamps and log.\n/node_modules/\n"
        }
        Lang::C => {
            "# Generated by build.sh on every build: bindings, objects, the pinned tools.\n/bindings/\n/build/\n"
        }
    };
    format!("{lines}# Built components.\n*.wasm\n")
}

/// The command that builds the component, run in the project folder.
pub fn build_command() -> String {
    format!("./build.sh {OUTPUT_WASM}")
}

/// The command that tests the built component, run in the project folder.
pub fn test_command() -> String {
    format!(
        "weir test {OUTPUT_WASM} --input {FIXTURE_INPUT} --expect {FIXTURE_EXPECTED} --crash-every 3"
    )
}

fn readme(lang: Lang, name: &str) -> String {
    let title = lang.title();
    let arg = lang.arg();
    let build = build_command();
    let test = test_command();
    let (files, prerequisites, change) = match lang {
        Lang::Rust => (
            "- `src/summer.rs`: the logic, over a `SummerHost` trait (the store and the publisher), \
             so that it runs and tests natively too;\n\
             - `src/sum.rs`: the data model (chunk and sum documents, CRC-64/XZ), and \
             `src/scan.rs`, a fast path for reading chunk and sum documents;\n\
             - `src/lib.rs`: the component: wit-bindgen's bindings of `wit/` (world `consumer`), \
             the exports calling the summer, the imports as its `SummerHost`;\n\
             - `Cargo.toml`, `rust-toolchain.toml` (the toolchain weir's own guests are built with, \
             with the `wasm32-wasip2` target).",
            "Rust from [rustup](https://rustup.rs); rustup installs the toolchain and target of \
             `rust-toolchain.toml` on first use, and the first build downloads the crates from \
             crates.io. `cargo test` runs the unit tests natively.",
            "Write your logic in place of `src/summer.rs` and `src/sum.rs` (keep it testable without \
             the host, as `Summer` is), and adapt `src/lib.rs`, which maps the exports to it and \
             lends it the imports. `SUMS_JOURNAL` in `src/lib.rs` is where results are published.",
        ),
        Lang::Python => (
            "- `app.py`: everything: `class WitWorld` implements the exports (`consume_message`, \
             `consume_messages`, `finalize_txn`) over a `Summer` that uses the `store` and \
             `publisher` imports (`wit_world.imports`);\n\
             - `build.sh`: installs componentize-py (PyPI, pinned) into `build/venv` on first use, \
             then builds; it rebuilds only when `app.py`, `wit/` or the script changed.",
            "`python3` with `venv` and `pip` (Debian: `apt-get install python3 python3-venv`) and \
             access to PyPI on the first build. The component is about 18 MB (it embeds CPython): \
             `weir test` spends most of its time compiling it.",
            "Replace `Summer` and the helpers above it in `app.py`; keep the `WitWorld` methods' \
             signatures (componentize-py derives them from `wit/`). A method fails by raising \
             `componentize_py_types.Err` with the WIT error (a string; an `IndexedError` in \
             `consume_messages`); any other exception traps, which is why `app.py` catches and \
             converts them.",
        ),
        Lang::Js => (
            "- `app.js`: everything: the ES module exports `consumeMessage`, `consumeMessages` and \
             `finalizeTxn`, and imports `weir:guest/store@0.1.0` and `weir:guest/publisher@0.1.0`;\n\
             - `package.json`, `package-lock.json`: componentize-qjs (QuickJS), pinned;\n\
             - `build.sh`: `npm ci` on first use, then `componentize-qjs --sync`; it rebuilds only \
             when `app.js`, `wit/`, the lock file or the script changed.",
            "Node.js 18+ with npm (Debian: `apt-get install nodejs npm`) and access to the npm \
             registry on the first build.",
            "Replace the summer's functions in `app.js`, keeping the three exported functions' \
             names and shapes (they follow `wit/consumer.wit` in camelCase). An export fails by \
             throwing the WIT error value: a string (`consumeMessage`, `finalizeTxn`) or \
             `{ index, message }` (`consumeMessages`).",
        ),
        Lang::C => (
            "- `summer.c`: everything: `exports_consumer_consume_message`, \
             `exports_consumer_consume_messages` and `exports_consumer_finalize_txn` over the \
             bindings `wit-bindgen c` generates into `bindings/` on every build;\n\
             - `build.sh`: checks the Debian packages, installs two pinned CLIs on first use \
             (wit-bindgen-cli 0.61.1 with `cargo install`, which takes minutes, and wasm-tools \
             1.262.0 from PyPI, hash-pinned in `wasm-tools.requirements.txt`) into \
             `build/guest-tools` (set `WEIR_GUEST_TOOLS` to share one folder between projects), \
             then compiles, links and wraps the component (under a second).",
            "Debian's `apt-get install -y clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32`, \
             Rust's `cargo` (for wit-bindgen-cli) and `python3` with `venv` (for wasm-tools).",
            "Replace the summer in `summer.c`, keeping the three `exports_consumer_*` functions \
             (their signatures are in `bindings/consumer.h` after a build). Exports own their \
             arguments and must free them; `build.sh` refuses a core module that imports WASI \
             (no stdio, clocks or environment).",
        ),
    };
    format!(
        "# {name}\n\
         \n\
         A weir consumer component in {title}, made by `weir new consumer --lang {arg}`. It starts \
         as Gazette's stream-sum **summer**, the one weir builds and tests in {title}, so that it \
         builds and passes `weir test` as generated: a working starting point to turn into your \
         own consumer.\n\
         \n\
         What it does: it reads chunk documents `{{\"ID\":[16 numbers],\"SeqNo\":n,\"Data\":\"<base64>\"}}` \
         and folds each chunk's data into its stream's running CRC-64/XZ, kept in the shard's store \
         (key: the 16 ID bytes). A chunk whose `Data` is null or empty ends its stream: the final \
         sum `{{\"ID\":[…],\"SeqNo\":n,\"Value\":u64}}` is published to `examples/stream-sum/sums`. \
         A SeqNo that is not the next one is an error, never skipped; ACK messages are ignored.\n\
         \n\
         ## Files\n\
         \n\
         {files}\n\
         - `wit/`: weir's WIT package, the host's contract: the component exports \
         `consume-message`, `consume-messages` and `finalize-txn` and imports `store`, `publisher` \
         and `log` (world `consumer` in `wit/consumer.wit`). Do not change it: the host implements \
         exactly this.\n\
         - `{FIXTURE_INPUT}`: sample input, one message per line; `{FIXTURE_EXPECTED}`: what \
         `weir test` must print for it.\n\
         \n\
         ## Build\n\
         \n\
         {prerequisites}\n\
         \n\
         ```sh\n\
         {build}\n\
         ```\n\
         \n\
         ## Test\n\
         \n\
         ```sh\n\
         {test}\n\
         ```\n\
         \n\
         `weir test` runs the component in a throwaway host (real journals, transactions, store \
         and recovery log), prints what it committed (the published documents without UUIDs, \
         then the store) and compares it with the expected file; `--crash-every 3` also crashes \
         the shard every 3 messages and checks that recovery commits the same. Exit status: 0 \
         both match; 1 an error (a guest error names its input line); 2 a difference, shown from \
         its first line.\n\
         \n\
         ## What to change\n\
         \n\
         1. The logic. {change}\n\
         2. The fixture: write input documents (one JSON object per line; a `UUID` is assigned \
         if missing) to `{FIXTURE_INPUT}`, check the output by eye with `weir test {OUTPUT_WASM} \
         --input {FIXTURE_INPUT}`, then record it with `--output {FIXTURE_EXPECTED}`.\n\
         3. Keep the host's rules (`wit/consumer.wit`): after any error the transaction is rolled \
         back and a fresh instance sees the same messages again, so keep no state in memory \
         across transactions that is not in the store (cache within a transaction and write it \
         back in `finalize-txn`, as the summer does); return errors rather than trap; there is \
         no file system, network or clock, and every call has a deadline and a memory cap.\n\
         \n\
         ## Run it\n\
         \n\
         While it still reads chunks and publishes sums: `weir stream-sum --summer {OUTPUT_WASM}` \
         (stream-sum end to end, every sum verified). On a server: `weir modules push --broker \
         ADDR {OUTPUT_WASM}` prints the module's digest; a shard runs it with the label \
         `weir.dev/module` set to that digest (`weir shards apply`).\n"
    )
}

#[cfg(test)]
mod test {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("host/ has a parent")
            .to_path_buf()
    }

    /// The names in `dir` (files and folders), sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()))
            .map(|entry| entry.expect("a folder entry").file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The file names of `embedded` after `prefix`, sorted.
    fn embedded_names(embedded: &[Embedded], prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = embedded
            .iter()
            .map(|(path, _)| path.strip_prefix(prefix).expect("the prefix").to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_source_file_is_embedded() {
        let repo = repo();
        assert_eq!(
            embedded_names(&files::WIT, "wit/"),
            listing(&repo.join("wit"))
        );
        let mut rust = embedded_names(&files::RUST_SRC, "src/");
        rust.push("lib.rs".to_string());
        rust.sort();
        assert_eq!(rust, listing(&repo.join("guest-summer/src")));
        // What a project must not get: the guest's own README and ignore
        // file (generated instead), build outputs and the repository's tests.
        let not_embedded = [
            ".gitignore",
            "README.md",
            "__pycache__",
            "bindings",
            "build",
            "node_modules",
            "test",
            "test.sh",
        ];
        for (folder, embedded) in [
            ("python-summer", &files::PYTHON[..]),
            ("js-summer", &files::JS[..]),
            ("c-summer", &files::C[..]),
        ] {
            let mut present = listing(&repo.join("guests").join(folder));
            present
                .retain(|name| !not_embedded.contains(&name.as_str()) && !name.ends_with(".wasm"));
            assert_eq!(embedded_names(embedded, ""), present, "guests/{folder}");
        }
    }

    #[test]
    fn rust_dependencies_are_the_workspace_versions() {
        let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
        for (dep, spec) in RUST_DEPENDENCIES.iter().chain(&RUST_DEV_DEPENDENCIES) {
            let line = format!("{dep} = {spec}");
            assert!(
                manifest.lines().any(|l| l.trim() == line),
                "the workspace Cargo.toml has no line `{line}`: update RUST_DEPENDENCIES"
            );
        }
        // Every dependency of the summer the template copies is listed.
        let summer =
            std::fs::read_to_string(repo().join("guest-summer/Cargo.toml")).expect("manifest");
        let mut section = "";
        for line in summer.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
            } else if let Some((dep, _)) = line.split_once(".workspace") {
                let listed = match section {
                    "[dependencies]" => RUST_DEPENDENCIES.iter().any(|(d, _)| *d == dep),
                    "[dev-dependencies]" => RUST_DEV_DEPENDENCIES.iter().any(|(d, _)| *d == dep),
                    _ => true,
                };
                assert!(
                    listed,
                    "guest-summer uses {dep} ({section}): add it to the template"
                );
            }
        }
    }

    #[test]
    fn the_rust_wit_path_is_rewritten_once() {
        let lib = rust_lib_rs().expect("the rewrite");
        let (from, to) = RUST_WIT_PATH;
        assert!(!lib.contains(from));
        assert_eq!(lib.matches(&format!("path: {to}")).count(), 1);
        // Nothing else changed.
        assert_eq!(lib.replacen(to, from, 1), files::RUST_LIB.1);
    }

    #[test]
    fn generates_each_language() {
        let temp = tempfile::tempdir().expect("a temp dir");
        for lang in Lang::ALL {
            let dir = temp.path().join(format!("My Summer.{lang}"));
            let generated = generate(lang, &dir).expect("generate");
            assert_eq!(generated.name, format!("my-summer-{lang}"));
            let expected = files(lang, &generated.name).expect("files");
            assert_eq!(generated.files.len(), expected.len());
            for file in &expected {
                let path = dir.join(&*file.path);
                let text = std::fs::read_to_string(&path).expect("a written file");
                assert_eq!(text, file.text, "{}", path.display());
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    let mode = std::fs::metadata(&path)
                        .expect("metadata")
                        .permissions()
                        .mode();
                    assert_eq!(mode & 0o111 != 0, file.executable, "{}", path.display());
                }
            }
            for common in [
                "build.sh",
                "README.md",
                "wit/consumer.wit",
                FIXTURE_INPUT,
                FIXTURE_EXPECTED,
            ] {
                assert!(dir.join(common).is_file(), "{lang}: {common}");
            }
            let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
            assert!(readme.contains(&build_command()) && readme.contains(&test_command()));
        }
        let rust = temp.path().join("My Summer.rust");
        let cargo = std::fs::read_to_string(rust.join("Cargo.toml")).expect("Cargo.toml");
        assert!(cargo.contains("name = \"my-summer-rust\"\n"));
        assert!(cargo.contains("\n[workspace]\n"));
        let build = std::fs::read_to_string(rust.join("build.sh")).expect("build.sh");
        assert!(build.contains("release/my_summer_rust.wasm"));
        let lib = std::fs::read_to_string(rust.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("path: \"wit\","));
    }

    #[test]
    fn generates_into_an_empty_folder() {
        let temp = tempfile::tempdir().expect("a temp dir");
        let dir = temp.path().join("empty");
        std::fs::create_dir(&dir).expect("mkdir");
        generate(Lang::C, &dir).expect("generate into an empty folder");
        assert!(dir.join("summer.c").is_file());
    }

    #[test]
    fn refuses_a_non_empty_folder_and_a_file() {
        let temp = tempfile::tempdir().expect("a temp dir");
        let dir = temp.path().join("taken");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("mine.txt"), "keep me").expect("write");
        let err = generate(Lang::Python, &dir).expect_err("a non-empty folder");
        assert!(matches!(err, TemplateError::NotEmpty(_)), "{err}");
        assert!(err.to_string().contains("is not empty"), "{err}");
        assert_eq!(listing(&dir), ["mine.txt"]);
        assert_eq!(
            std::fs::read_to_string(dir.join("mine.txt")).expect("read"),
            "keep me"
        );

        let file = temp.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let err = generate(Lang::Js, &file).expect_err("a file");
        assert!(matches!(err, TemplateError::NotAFolder(_)), "{err}");
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let temp = tempfile::tempdir().expect("a temp dir");
        let files = files(Lang::Rust, "project").expect("files");

        // A missing folder: created with its missing parents, all removed.
        let dir = temp.path().join("new/deeper/project");
        let created = prepare_folder(&dir).expect("prepare");
        let top = temp.path().join("new");
        assert_eq!(created.as_deref(), Some(top.as_path()));
        // A folder where a file must go makes the write fail halfway.
        std::fs::create_dir_all(dir.join("src/lib.rs")).expect("mkdir");
        let err = write_or_undo(&dir, created.as_deref(), &files).expect_err("a blocked file");
        assert!(matches!(err, TemplateError::Io { .. }), "{err}");
        assert!(!top.exists());

        // An empty folder: kept, and empty again.
        let dir = temp.path().join("existing");
        std::fs::create_dir(&dir).expect("mkdir");
        let created = prepare_folder(&dir).expect("prepare");
        assert_eq!(created, None);
        std::fs::create_dir_all(dir.join("src/lib.rs")).expect("mkdir");
        let err = write_or_undo(&dir, None, &files).expect_err("a blocked file");
        assert!(err.to_string().contains("src/lib.rs"), "{err}");
        assert!(listing(&dir).is_empty());
    }

    #[test]
    fn names_are_valid_package_names() {
        for (raw, name) in [
            ("my-summer", "my-summer"),
            ("My Summer", "my-summer"),
            ("__x__", "x"),
            ("été", "t"),
            ("", "consumer"),
            ("...", "consumer"),
            ("42", "consumer-42"),
            ("test", "consumer-test"),
            ("fn", "consumer-fn"),
            ("proc-macro", "consumer-proc-macro"),
            ("a_b-c", "a_b-c"),
        ] {
            assert_eq!(sanitize_name(raw), name, "{raw:?}");
        }
        assert_eq!(sanitize_name(&"x".repeat(100)).len(), 64);
        let temp = tempfile::tempdir().expect("a temp dir");
        let dir = temp.path().join("Named");
        std::fs::create_dir(&dir).expect("mkdir");
        assert_eq!(project_name(&dir.join(".")), "named");
        assert_eq!(project_name(&dir.join("sub/..")), "named");
    }
}
