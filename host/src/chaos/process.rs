//! Child-process control for the chaos harness: start a `weir` subcommand
//! with its output in a log file, signal it (SIGKILL, SIGTERM, SIGSTOP,
//! SIGCONT, SIGINT), wait for a line it prints or for its exit, and read
//! its resident memory.
//!
//! Guarantees:
//! - Every incarnation appends to one log file per process (stdout and
//!   stderr), after a header line naming the incarnation, so a failure
//!   points at one file that tells the whole story.
//! - A child runs in its own process group: a Ctrl-C at the terminal
//!   reaches the harness only, which then stops the children itself. A
//!   child is SIGKILLed if its [`Process`] is dropped, so an aborted run
//!   leaves no server behind.
//! - Signals go to the child's pid only while the child is unreaped, so a
//!   signal can never hit a recycled pid.
//! - The stdout lines of the current incarnation are kept (the last
//!   [`KEPT_LINES`]) for the harness to read, e.g. the chunker's summary.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Stdout lines kept per incarnation; older ones are only in the log.
pub const KEPT_LINES: usize = 4096;

/// Errors of controlling a child.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The log file could not be opened or written.
    #[error("log {path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The child could not be started.
    #[error("starting {name}: {source}")]
    Spawn {
        /// The process's name.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be sent.
    #[error("sending {signal} to {name}: {source}")]
    Signal {
        /// The process's name.
        name: String,
        /// The signal's name.
        signal: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The child has already exited (and was reaped).
    #[error("{name} is not running (it exited: {status})")]
    NotRunning {
        /// The process's name.
        name: String,
        /// How it exited.
        status: String,
    },
    /// Waiting on the child failed.
    #[error("waiting for {name}: {source}")]
    Wait {
        /// The process's name.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The signals the harness sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// Kill at once.
    Kill,
    /// Stop gracefully.
    Term,
    /// Interrupt (the chunker's "stop and summarize").
    Int,
    /// Freeze.
    Stop,
    /// Thaw.
    Cont,
}

impl Sig {
    fn name(self) -> &'static str {
        match self {
            Sig::Kill => "SIGKILL",
            Sig::Term => "SIGTERM",
            Sig::Int => "SIGINT",
            Sig::Stop => "SIGSTOP",
            Sig::Cont => "SIGCONT",
        }
    }

    fn signal(self) -> Signal {
        match self {
            Sig::Kill => Signal::KILL,
            Sig::Term => Signal::TERM,
            Sig::Int => Signal::INT,
            Sig::Stop => Signal::STOP,
            Sig::Cont => Signal::CONT,
        }
    }
}

/// What to run: the binary, the arguments, the log.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// A short name for messages and the log's header (`broker`).
    pub name: String,
    /// The executable.
    pub exe: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The log file every incarnation appends to.
    pub log: PathBuf,
}

/// Stdout lines of the current incarnation, shared with the pump task.
#[derive(Debug, Default)]
struct Lines {
    lines: VecDeque<String>,
    /// Lines dropped from the front to stay within [`KEPT_LINES`].
    dropped: usize,
    /// Stdout reached its end (the child closed it or exited).
    closed: bool,
}

/// One incarnation of a child process.
#[derive(Debug)]
pub struct Process {
    spec: ProcessSpec,
    child: Child,
    pid: Pid,
    incarnation: u32,
    started: Instant,
    exited: Option<ExitStatus>,
    lines: Arc<Mutex<Lines>>,
    /// Bumped by the pump on every line and at the end of stdout.
    changed: watch::Receiver<u64>,
}

impl Process {
    /// Starts incarnation `incarnation` of `spec`.
    pub async fn spawn(spec: &ProcessSpec, incarnation: u32) -> Result<Process, ProcessError> {
        let log_err = |source| ProcessError::Log {
            path: spec.log.clone(),
            source,
        };
        let mut header = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .await
            .map_err(log_err)?;
        let line = format!(
            "=== {} incarnation {incarnation}: {} {} ===\n",
            spec.name,
            spec.exe.display(),
            spec.args
                .iter()
                .map(|arg| arg.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        header.write_all(line.as_bytes()).await.map_err(log_err)?;
        header.flush().await.map_err(log_err)?;
        let stderr = open_append(&spec.log).await.map_err(log_err)?;

        let mut child = Command::new(&spec.exe)
            .args(&spec.args)
            // Logs go to files: no terminal colour codes in them.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                name: spec.name.clone(),
                source,
            })?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw)
            .ok_or_else(|| ProcessError::Spawn {
                name: spec.name.clone(),
                source: std::io::Error::other("the child has no pid"),
            })?;
        let lines = Arc::new(Mutex::new(Lines::default()));
        let (bump, changed) = watch::channel(0u64);
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(pump(stdout, header, lines.clone(), bump));
        }
        Ok(Process {
            spec: spec.clone(),
            child,
            pid,
            incarnation,
            started: Instant::now(),
            exited: None,
            lines,
            changed,
        })
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The spec it was started from.
    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.spec.log
    }

    /// Which incarnation this is (from 1).
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// Time since it was started.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sends `sig`, unless the child has exited.
    pub fn signal(&mut self, sig: Sig) -> Result<(), ProcessError> {
        if let Some(status) = self.try_exited()? {
            return Err(ProcessError::NotRunning {
                name: self.spec.name.clone(),
                status: status.to_string(),
            });
        }
        // The child is unreaped (try_exited said so), so its pid is still
        // ours even if it has just died.
        kill_process(self.pid, sig.signal()).map_err(|err| ProcessError::Signal {
            name: self.spec.name.clone(),
            signal: sig.name(),
            source: err.into(),
        })
    }

    /// Its exit status if it has exited (reaping it), or `None`.
    pub fn try_exited(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().map_err(|source| ProcessError::Wait {
                name: self.spec.name.clone(),
                source,
            })?;
        }
        Ok(self.exited)
    }

    /// Waits up to `timeout` for it to exit; `None` if it still runs.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<ExitStatus>, ProcessError> {
        if let Some(status) = self.exited {
            return Ok(Some(status));
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.exited = Some(status);
                Ok(Some(status))
            }
            Ok(Err(source)) => Err(ProcessError::Wait {
                name: self.spec.name.clone(),
                source,
            }),
            Err(_) => Ok(None),
        }
    }

    /// SIGKILLs it (if it still runs) and reaps it.
    pub async fn kill(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_exited()? {
            return Ok(status);
        }
        self.signal(Sig::Kill)?;
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| ProcessError::Wait {
                name: self.spec.name.clone(),
                source,
            })?;
        self.exited = Some(status);
        Ok(status)
    }

    /// Waits up to `timeout` for a stdout line that `pick` accepts, and
    /// returns what `pick` made of it; `None` on timeout or if stdout ended
    /// first (the child exited).
    pub async fn wait_line<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Lines seen so far, counting those dropped from the front.
        let mut seen = 0usize;
        loop {
            {
                let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
                let start = seen.saturating_sub(lines.dropped);
                for line in lines.lines.iter().skip(start) {
                    if let Some(found) = pick(line) {
                        return Some(found);
                    }
                }
                seen = lines.dropped + lines.lines.len();
                if lines.closed {
                    return None;
                }
            }
            if tokio::time::timeout_at(deadline, self.changed.changed())
                .await
                .map_or(true, |changed| changed.is_err())
            {
                return None;
            }
        }
    }

    /// The kept stdout lines of this incarnation.
    pub fn stdout_lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.lines.iter().cloned().collect()
    }

    /// Its resident set size in KiB (`VmRSS` of `/proc/PID/status`), or
    /// `None` if it has exited or the file is unreadable.
    pub fn rss_kib(&mut self) -> Option<u64> {
        if !matches!(self.try_exited(), Ok(None)) {
            return None;
        }
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid.as_raw_pid())).ok()?;
        parse_vm_rss(&status)
    }
}

/// The `VmRSS:` value of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    Ok(file.into_std().await)
}

/// Copies the child's stdout into its log, keeping the lines for readers.
async fn pump(
    stdout: tokio::process::ChildStdout,
    mut log: tokio::fs::File,
    lines: Arc<Mutex<Lines>>,
    bump: watch::Sender<u64>,
) {
    let mut reader = BufReader::new(stdout).lines();
    // A read error (never expected from a pipe) ends the copy like EOF.
    while let Ok(Some(line)) = reader.next_line().await {
        // The log is best effort: a full disk must not stop the pump, or
        // the child would block on a full pipe.
        let _ = log.write_all(line.as_bytes()).await;
        let _ = log.write_all(b"\n").await;
        {
            let mut kept = lines.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.lines.len() == KEPT_LINES {
                kept.lines.pop_front();
                kept.dropped += 1;
            }
            kept.lines.push_back(line);
        }
        bump.send_modify(|count| *count += 1);
    }
    let _ = log.flush().await;
    lines.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
    bump.send_modify(|count| *count += 1);
}

#[cfg(test)]
mod test {
    use super::*;

    fn spec(dir: &Path, script: &str) -> ProcessSpec {
        ProcessSpec {
            name: "sh".into(),
            exe: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            log: dir.join("sh.log"),
        }
    }

    #[tokio::test]
    async fn a_child_s_lines_are_seen_and_logged_and_its_exit_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Process::spawn(&spec(dir.path(), "echo hello 42; echo oops >&2"), 1)
            .await
            .unwrap();
        let found = child
            .wait_line(Duration::from_secs(10), |line| {
                line.strip_prefix("hello ").map(str::to_string)
            })
            .await;
        assert_eq!(found.as_deref(), Some("42"));
        let status = child.wait_exit(Duration::from_secs(10)).await.unwrap();
        assert!(status.is_some_and(|status| status.success()));
        // The pump may still be writing the log after the exit.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(dir.path().join("sh.log")).unwrap();
            if log.contains("hello 42") && log.contains("oops") {
                assert!(log.starts_with("=== sh incarnation 1:"), "{log}");
                break;
            }
            assert!(Instant::now() < deadline, "{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_stopped_child_does_not_exit_until_killed_and_is_then_not_signalable() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Process::spawn(&spec(dir.path(), "sleep 30"), 1)
            .await
            .unwrap();
        child.signal(Sig::Stop).unwrap();
        assert!(child.rss_kib().is_some());
        assert_eq!(
            child.wait_exit(Duration::from_millis(200)).await.unwrap(),
            None
        );
        let status = child.kill().await.unwrap();
        assert!(!status.success());
        assert!(matches!(
            child.signal(Sig::Cont),
            Err(ProcessError::NotRunning { .. })
        ));
        assert_eq!(child.rss_kib(), None);
    }

    #[tokio::test]
    async fn waiting_for_a_line_ends_when_the_child_exits_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Process::spawn(&spec(dir.path(), "echo other"), 1)
            .await
            .unwrap();
        let found = child
            .wait_line(Duration::from_secs(10), |line| {
                line.starts_with("never").then_some(())
            })
            .await;
        assert_eq!(found, None);
    }

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tweir\nVmPeak:\t  9 kB\nVmRSS:\t   123456 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(123_456));
        assert_eq!(parse_vm_rss("Name:\tzombie\n"), None);
    }
}
