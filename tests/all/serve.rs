//! `weir serve` as real processes: stream-sum with the server in one process
//! and the chunker in another (whole and split roles), and a server killed
//! with SIGKILL mid-run and restarted on the same data directory and port,
//! through which the chunker must finish with every sum verified once.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WEIR: &str = env!("CARGO_BIN_EXE_weir_cli");

/// A `weir serve` child process and the address it listens on.
struct ServeProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServeProcess {
    /// Starts `weir serve` with `args` and waits for its "serving on" line.
    fn start(data_dir: &Path, listen: &str, args: &[&str]) -> ServeProcess {
        let mut child = Command::new(WEIR)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("weir serve prints its address before exiting")
                .expect("stdout is readable");
            if let Some(addr) = line.strip_prefix("weir serving on ") {
                break addr.parse().expect("a socket address");
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServeProcess { child, addr }
    }

    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    fn sigterm(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(status.expect("kill runs").success());
        let exit = self.child.wait().expect("reaped");
        assert!(exit.success(), "a SIGTERM'd server exits cleanly: {exit}");
    }
}

impl Drop for ServeProcess {
    /// A failed test must not leave its server running (it would hold the
    /// test harness's output pipe open); already reaped children ignore it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `weir stream-sum --broker ADDR` with `args`; returns its output.
fn stream_sum(addr: SocketAddr, args: &[&str]) -> Child {
    Command::new(WEIR)
        .arg("stream-sum")
        .args(["--broker", &addr.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("weir stream-sum starts")
}

fn wait_success(child: Child, what: &str) -> String {
    let output = child.wait_with_output().expect("waited");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}",
        output.status
    );
    stdout
}

#[test]
fn stream_sum_runs_against_a_server_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path(), "127.0.0.1:0", &[]);
    let out = wait_success(
        stream_sum(
            server.addr,
            &["--partitions", "4", "--streams", "25", "--seed", "7"],
        ),
        "stream-sum --broker",
    );
    assert!(out.contains("every stream verified"), "{out}");
    assert!(out.contains("streams verified   100"), "{out}");
    // A second run continues on the same server: journals, module and
    // shards exist; only the new run's streams are verified.
    let out = wait_success(
        stream_sum(
            server.addr,
            &["--partitions", "4", "--streams", "10", "--seed", "8"],
        ),
        "a second stream-sum --broker",
    );
    assert!(out.contains("streams verified   40"), "{out}");

    // `/metrics` counts what the runs did, per journal, shard, phase and
    // module.
    let metrics = scrape(server.addr);
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in:\n{metrics}"))
    };
    let chunks = "examples/stream-sum/chunks/part-000";
    assert!(
        value(&format!(
            "weir_journal_appends_total{{journal=\"{chunks}\"}}"
        )) > 0.0
    );
    assert!(
        value(&format!(
            "weir_journal_append_bytes_total{{journal=\"{chunks}\"}}"
        )) > 0.0
    );
    for phase in ["Consume", "Finalize", "Flush", "Commit", "Ack"] {
        let series = format!(
            "weir_shard_txn_phase_seconds_count{{shard=\"chunks-part-000\",phase=\"{phase}\"}}"
        );
        assert!(value(&series) >= 1.0, "{series}");
    }
    let guest_calls = metrics
        .lines()
        .filter(|line| line.starts_with("weir_guest_call_seconds_count{module="))
        .count();
    assert!(guest_calls >= 1, "{metrics}");
    assert!(metrics.contains("weir_shard_status{"), "{metrics}");
    server.sigterm();
}

/// GETs `/metrics` over plain HTTP/1.1.
fn scrape(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n")
        .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[test]
fn stream_sum_runs_with_the_broker_and_the_consumer_in_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ServeProcess::start(&dir.path().join("b"), "127.0.0.1:0", &["--role", "broker"]);
    let broker_addr = broker.addr.to_string();
    let consumer = ServeProcess::start(
        &dir.path().join("c"),
        "127.0.0.1:0",
        &["--role", "consumer", "--broker", &broker_addr],
    );
    let out = wait_success(
        stream_sum(
            broker.addr,
            &[
                "--consumer",
                &consumer.addr.to_string(),
                "--partitions",
                "3",
                "--streams",
                "15",
            ],
        ),
        "stream-sum with split roles",
    );
    assert!(out.contains("streams verified   60"), "{out}");
    consumer.sigterm();
    broker.sigterm();
}

#[test]
fn a_sigkilled_server_restarts_and_the_chunker_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path(), "127.0.0.1:0", &[]);
    let addr = server.addr;
    let run = stream_sum(
        addr,
        &["--partitions", "4", "--streams", "150", "--workers", "4"],
    );
    let mut server = Some(server);
    // Kill the server twice while the chunker runs, restarting it each time
    // on the same data directory and port.
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        server.take().expect("a running server").sigkill();
        let restarted = Instant::now();
        server = Some(ServeProcess::start(dir.path(), &addr.to_string(), &[]));
        eprintln!("kill {round}: restarted in {:?}", restarted.elapsed());
    }
    let out = wait_success(run, "stream-sum through server kills");
    assert!(out.contains("streams verified   600"), "{out}");
    server.expect("a running server").sigterm();
}
