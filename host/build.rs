//! Builds what the host embeds, so that a plain `cargo build` / `cargo test`
//! needs no extra step: the gRPC code generated from `proto/` (compiled by
//! protox, in pure Rust: no system `protoc`), and the guest components.
//!
//! The guests (`guest-summer`, `guest-chunker`, and the fault-test guest
//! `tests/guests/hostile`) are workspace members that only build for
//! `wasm32-wasip2`. This script runs one nested `cargo build --release
//! --locked --target wasm32-wasip2` for them, with its own target directory
//! under `$OUT_DIR/guests` (so it never waits on the outer build's lock on
//! `target/`), and copies each component to `$OUT_DIR/<crate>.wasm`, where
//! `runtime::guests` picks it up with `include_bytes!`.
//!
//! The nested cargo must not inherit what the outer cargo set for *this*
//! build: target, rustflags, jobserver, wrappers (clippy's driver), profile
//! and feature variables. Every `CARGO_*` variable is cleared except the
//! ones that configure cargo's home, network and registries.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest target.
const TARGET: &str = "wasm32-wasip2";

/// (package, artifact stem, source folder relative to the workspace root).
const GUESTS: [(&str, &str, &str); 3] = [
    ("guest-summer", "guest_summer", "guest-summer"),
    ("guest-chunker", "guest_chunker", "guest-chunker"),
    ("guest-hostile", "guest_hostile", "tests/guests/hostile"),
];

/// `CARGO_*` variables that describe the user's cargo setup rather than this
/// build, and are passed through to the nested cargo.
const KEEP_CARGO_PREFIXES: [&str; 6] = [
    "CARGO_HOME",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRIES_",
    "CARGO_REGISTRY_",
    "CARGO_TERM_",
];

/// Other variables the outer cargo sets for build scripts, or that would
/// change how the guests compile.
const CLEARED: [&str; 14] = [
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "OPT_LEVEL",
    "PROFILE",
    "DEBUG",
    "NUM_JOBS",
    "MAKEFLAGS",
    "MFLAGS",
    "CLIPPY_ARGS",
];

/// The .proto files under `proto/`.
const PROTOS: [&str; 3] = ["protocol.proto", "consumer.proto", "weir.proto"];

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    compile_protos(&manifest_dir.join("proto"), &out_dir);

    let Some(root) = manifest_dir.parent().map(Path::to_path_buf) else {
        panic!("host/ has no parent folder: cannot find the workspace root");
    };

    println!("cargo:rerun-if-changed=build.rs");
    for path in ["wit", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    for (_, _, folder) in GUESTS {
        println!(
            "cargo:rerun-if-changed={}",
            root.join(folder).join("src").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            root.join(folder).join("Cargo.toml").display()
        );
    }

    check_target_installed();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    for (package, _, _) in GUESTS {
        cmd.arg("--package").arg(package);
    }
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_var = key.starts_with("CARGO_") || key.starts_with("__CARGO");
        if cargo_var && !KEEP_CARGO_PREFIXES.iter().any(|keep| key.starts_with(keep)) {
            cmd.env_remove(key);
        }
    }
    for key in CLEARED {
        cmd.env_remove(key);
    }
    // Small, fast guests; these apply to the nested build only.
    cmd.env("CARGO_TARGET_DIR", out_dir.join("guests"))
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "false");

    let status = match cmd.status() {
        Ok(status) => status,
        Err(err) => panic!("cannot run the nested cargo to build the guests ({cmd:?}): {err}"),
    };
    if !status.success() {
        panic!("building the guest components failed ({status}); see the output above");
    }

    let built = out_dir.join("guests").join(TARGET).join("release");
    for (_, stem, _) in GUESTS {
        let from = built.join(format!("{stem}.wasm"));
        let to = out_dir.join(format!("{stem}.wasm"));
        if let Err(err) = fs::copy(&from, &to) {
            panic!("cannot copy {} to {}: {err}", from.display(), to.display());
        }
    }
}

/// Generates the tonic services and prost messages of `proto/`, and the
/// encoded descriptor set that server reflection serves.
fn compile_protos(proto_dir: &Path, out_dir: &Path) {
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    let fds = match protox::compile(PROTOS, [proto_dir]) {
        Ok(fds) => fds,
        Err(err) => panic!("compiling {}: {err:?}", proto_dir.display()),
    };
    let descriptor = prost::Message::encode_to_vec(&fds);
    if let Err(err) = fs::write(out_dir.join("weir_descriptor.bin"), descriptor) {
        panic!("writing the descriptor set: {err}");
    }
    if let Err(err) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
    {
        panic!("generating the gRPC code: {err}");
    }
}

/// Fails with the fix if the `wasm32-wasip2` standard library is missing.
fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let output = Command::new(&rustc).args(["--print", "sysroot"]).output();
    let sysroot = match output {
        Ok(output) if output.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim().to_string())
        }
        // Let the nested cargo report whatever is wrong with rustc.
        _ => return,
    };
    if !sysroot.join("lib").join("rustlib").join(TARGET).exists() {
        panic!(
            "the {TARGET} target is not installed for {} (needed to build the guest \
             components): run `rustup target add {TARGET}`",
            sysroot.display()
        );
    }
}

fn env_var(key: &str) -> OsString {
    match env::var_os(key) {
        Some(value) => value,
        None => panic!("cargo did not set {key} for the build script"),
    }
}
