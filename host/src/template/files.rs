//! The sources that `weir new consumer` writes, embedded at compile time from
//! the guests the repository builds and tests, so a template cannot drift
//! from them: the stream-sum summer in Rust (`guest-summer/src`), Python,
//! JavaScript and C (`guests/*-summer`), the WIT package (`wit/`) and the
//! sandbox fixture (`tests/fixtures/sandbox`).
//!
//! Each list pairs a path inside the generated project with the file's text.
//! The module's tests check that every list names every file of its source
//! folder, except those a project must not get (tests, READMEs, ignore files,
//! build outputs), so a new source file cannot be forgotten here.

/// One embedded file: its path inside the generated project and its text.
pub(super) type Embedded = (&'static str, &'static str);

/// The WIT package (`wit/`), as `wit/<file>`.
pub(super) const WIT: [Embedded; 8] = [
    ("wit/chunker.wit", include_str!("../../../wit/chunker.wit")),
    ("wit/clock.wit", include_str!("../../../wit/clock.wit")),
    (
        "wit/consumer.wit",
        include_str!("../../../wit/consumer.wit"),
    ),
    (
        "wit/journals.wit",
        include_str!("../../../wit/journals.wit"),
    ),
    ("wit/log.wit", include_str!("../../../wit/log.wit")),
    (
        "wit/publisher.wit",
        include_str!("../../../wit/publisher.wit"),
    ),
    ("wit/store.wit", include_str!("../../../wit/store.wit")),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
];

/// The sample input and the output `weir test` must print for it.
pub(super) const FIXTURES: [Embedded; 2] = [
    (
        "fixtures/chunks.jsonl",
        include_str!("../../../tests/fixtures/sandbox/chunks.jsonl"),
    ),
    (
        "fixtures/chunks.expected.jsonl",
        include_str!("../../../tests/fixtures/sandbox/chunks.expected.jsonl"),
    ),
];

/// `guest-summer/src/lib.rs`, whose WIT path the generator rewrites (see
/// [`super::RUST_WIT_PATH`]).
pub(super) const RUST_LIB: Embedded = (
    "src/lib.rs",
    include_str!("../../../guest-summer/src/lib.rs"),
);

/// The rest of `guest-summer/src`, unchanged.
pub(super) const RUST_SRC: [Embedded; 3] = [
    (
        "src/summer.rs",
        include_str!("../../../guest-summer/src/summer.rs"),
    ),
    (
        "src/sum.rs",
        include_str!("../../../guest-summer/src/sum.rs"),
    ),
    (
        "src/scan.rs",
        include_str!("../../../guest-summer/src/scan.rs"),
    ),
];

/// The toolchain the repository's guests are built and tested with; rustup
/// also installs the `wasm32-wasip2` target it names on first use.
pub(super) const RUST_TOOLCHAIN: Embedded = (
    "rust-toolchain.toml",
    include_str!("../../../rust-toolchain.toml"),
);

/// `guests/python-summer`, without its README, ignore file and build folder.
pub(super) const PYTHON: [Embedded; 2] = [
    (
        "app.py",
        include_str!("../../../guests/python-summer/app.py"),
    ),
    (
        "build.sh",
        include_str!("../../../guests/python-summer/build.sh"),
    ),
];

/// `guests/js-summer`, without its README, ignore file and `node_modules`.
pub(super) const JS: [Embedded; 4] = [
    ("app.js", include_str!("../../../guests/js-summer/app.js")),
    (
        "package.json",
        include_str!("../../../guests/js-summer/package.json"),
    ),
    (
        "package-lock.json",
        include_str!("../../../guests/js-summer/package-lock.json"),
    ),
    (
        "build.sh",
        include_str!("../../../guests/js-summer/build.sh"),
    ),
];

/// `guests/c-summer`, without its README, ignore file, generated bindings and
/// the repository's own tests (`test.sh`, `test/`).
pub(super) const C: [Embedded; 3] = [
    (
        "summer.c",
        include_str!("../../../guests/c-summer/summer.c"),
    ),
    (
        "build.sh",
        include_str!("../../../guests/c-summer/build.sh"),
    ),
    (
        "wasm-tools.requirements.txt",
        include_str!("../../../guests/c-summer/wasm-tools.requirements.txt"),
    ),
];
