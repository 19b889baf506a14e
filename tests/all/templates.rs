//! `weir new consumer`: for every language, the generated project builds
//! with its own `build.sh` and passes `weir test` on its own fixture, as
//! generated, by exactly the two commands `weir new` prints; and bad
//! requests are refused without touching the file system.
//!
//! Each project is generated into a fresh temporary folder. So that reruns
//! stay fast, the toolchains are shared between runs: the Rust template
//! builds into `<repo>/target/template-test` (its crates compile once), the C
//! template uses the tools root of the repository's own C guest
//! (`<repo>/target/guest-tools`, which `guests/build.sh` fills), and pip and
//! npm use their usual caches. A missing toolchain fails the test with the
//! build's own message (the builds install what comes from registries; the
//! Debian packages come from `scripts/setup-guests.sh`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const WEIR: &str = env!("CARGO_BIN_EXE_weir_cli");

/// Longest a template's first build may take (the Rust crates and, on a
/// fresh machine, the C tools compile from source on 2 cores).
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);
/// Longest `weir test` may take (mostly compiling an 18 MB Python component).
const TEST_LIMIT: Duration = Duration::from_secs(5 * 60);

/// `CARGO_*` variables of the user's cargo setup, kept for the builds; the
/// others describe this test's own build and would leak into theirs.
const KEEP_CARGO: [&str; 6] = [
    "CARGO_HOME",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRIES_",
    "CARGO_REGISTRY_",
    "CARGO_TERM_",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// What a finished command left: its status and its output, read back from
/// the files it wrote them to.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Ran {
    fn describe(&self, what: &str) -> String {
        format!(
            "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` in its own process group with its output in files under
/// `logs` (no pipe to fill), and kills the group after `limit`.
fn run(mut cmd: Command, logs: &Path, name: &str, limit: Duration) -> Ran {
    use std::os::unix::process::CommandExt as _;
    let out_path = logs.join(format!("{name}.stdout"));
    let err_path = logs.join(format!("{name}.stderr"));
    let stdout = File::create(&out_path).expect("create the stdout log");
    let stderr = File::create(&err_path).expect("create the stderr log");
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {name} ({cmd:?}): {err}"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > limit {
            // The whole group: a build's compilers too.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "{name} did not finish within {limit:?}; its output is in {} and {}",
                out_path.display(),
                err_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ran {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// `weir new consumer --lang LANG` into a temporary folder, then the build
/// and test commands it printed, run in the project folder as a user would.
fn generated_project_builds_and_passes_weir_test(lang: &str) {
    let temp = tempfile::Builder::new()
        .prefix("weir-template-")
        .tempdir()
        .expect("a temporary folder");
    let logs = temp.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir logs");
    let dir = temp.path().join(format!("{lang}-consumer"));

    let mut new = Command::new(WEIR);
    new.args(["new", "consumer", "--lang", lang]).arg(&dir);
    let generated = run(new, &logs, "new", TEST_LIMIT);
    assert!(
        generated.status.success(),
        "{}",
        generated.describe("weir new")
    );
    for file in ["README.md", "build.sh", "fixtures/chunks.jsonl"] {
        assert!(dir.join(file).is_file(), "{lang}: no {file}");
    }

    // The two commands, as printed: `cd DIR && BUILD` and `weir test ...`.
    let lines: Vec<&str> = generated.stdout.lines().map(str::trim).collect();
    let build_line = lines
        .iter()
        .find_map(|line| line.strip_prefix("cd ")?.split_once(" && ").map(|(_, b)| b))
        .unwrap_or_else(|| panic!("no build command in {:?}", generated.stdout));
    let test_line = lines
        .iter()
        .find_map(|line| line.strip_prefix("weir test "))
        .unwrap_or_else(|| panic!("no test command in {:?}", generated.stdout));
    let build_words: Vec<&str> = build_line.split_whitespace().collect();
    let test_words: Vec<&str> = test_line.split_whitespace().collect();
    assert_eq!(build_words, ["./build.sh", "consumer.wasm"]);
    assert!(
        test_line.contains("--expect fixtures/chunks.expected.jsonl")
            && test_line.contains("--crash-every 3"),
        "{test_line}"
    );

    let mut build = Command::new(dir.join(build_words[0]));
    build.args(&build_words[1..]).current_dir(&dir);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let ours = (key.starts_with("CARGO") && !KEEP_CARGO.iter().any(|k| key.starts_with(k)))
            || key.starts_with("RUSTUP_TOOLCHAIN")
            || key.starts_with("RUSTFLAGS")
            || key.starts_with("RUSTC");
        if ours {
            build.env_remove(key);
        }
    }
    let target = repo().join("target");
    build
        .env("CARGO_TARGET_DIR", target.join("template-test"))
        .env("WEIR_GUEST_TOOLS", target.join("guest-tools"));
    let built = run(build, &logs, "build", BUILD_LIMIT);
    assert!(
        built.status.success(),
        "{}",
        built.describe(&format!("{lang}: ./build.sh"))
    );
    let wasm = dir.join("consumer.wasm");
    let size = std::fs::metadata(&wasm)
        .unwrap_or_else(|err| panic!("{lang}: build.sh made no {}: {err}", wasm.display()))
        .len();

    let mut test = Command::new(WEIR);
    test.arg("test").args(&test_words).current_dir(&dir);
    let tested = run(test, &logs, "test", TEST_LIMIT);
    assert_eq!(
        tested.status.code(),
        Some(0),
        "{}",
        tested.describe(&format!("{lang}: weir test"))
    );
    assert!(
        tested
            .stderr
            .contains("the crashed run committed exactly what the crash-free run did"),
        "{}",
        tested.describe(&format!("{lang}: weir test"))
    );
    // Not only the exit status: the output is the expectation.
    let expected =
        std::fs::read_to_string(dir.join("fixtures/chunks.expected.jsonl")).expect("fixture");
    assert_eq!(tested.stdout, expected, "{lang}: weir test's output");

    eprintln!(
        "template {lang}: generated in {:.2} s, built in {:.1} s ({size} bytes), \
         weir test in {:.1} s",
        generated.took.as_secs_f64(),
        built.took.as_secs_f64(),
        tested.took.as_secs_f64(),
    );
}

#[test]
fn rust_template_builds_and_passes_weir_test() {
    generated_project_builds_and_passes_weir_test("rust");
}

#[test]
fn python_template_builds_and_passes_weir_test() {
    generated_project_builds_and_passes_weir_test("python");
}

#[test]
fn js_template_builds_and_passes_weir_test() {
    generated_project_builds_and_passes_weir_test("js");
}

#[test]
fn c_template_builds_and_passes_weir_test() {
    generated_project_builds_and_passes_weir_test("c");
}

#[test]
fn bad_requests_are_refused_without_writing() {
    let temp = tempfile::tempdir().expect("a temporary folder");

    // An unknown language: clap's usage error, listing the languages.
    let dir = temp.path().join("cobol-consumer");
    let out = Command::new(WEIR)
        .args(["new", "consumer", "--lang", "cobol"])
        .arg(&dir)
        .output()
        .expect("run weir new");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[possible values: rust, python, js, c]"),
        "{stderr}"
    );
    assert!(!dir.exists());

    // A folder that holds something: refused, left as it was.
    let dir = temp.path().join("taken");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("notes.txt"), "mine").expect("write");
    let out = Command::new(WEIR)
        .args(["new", "consumer", "--lang", "rust"])
        .arg(&dir)
        .output()
        .expect("run weir new");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);

    // No language at all: a usage error too.
    let out = Command::new(WEIR)
        .args(["new", "consumer"])
        .arg(temp.path().join("x"))
        .output()
        .expect("run weir new");
    assert_eq!(out.status.code(), Some(2));
}
