//! The test harness the `gregor` binary's tests share: a server child process and client commands,
//! every wait bounded by [`DEADLINE`], every child stopped by PID.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // a test fails by panicking

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const GREGOR: &str = env!("CARGO_BIN_EXE_gregor");
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A `gregor server` child process, killed on drop if still running.
pub struct Server {
    child: Option<Child>,
    /// The address clients use.
    pub bootstrap: String,
}

impl Server {
    /// Starts `gregor server` on 127.0.0.1:0 with its data in `dir`, plus `extra` arguments, and
    /// waits (bounded) for the line that reports the bound address.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(GREGOR)
            .args([
                "server",
                "--listeners",
                "PLAINTEXT://127.0.0.1:0",
                "--log-dirs",
            ])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gregor server");
        // The server prints its bound address once it serves; wait for that line.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The controller's line may come first; the broker's says `serving Kafka on`.
        let deadline = std::time::Instant::now() + DEADLINE;
        let line = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("server did not report its address");
            if line.contains("serving Kafka on") {
                break line;
            }
        };
        let addr = line
            .split_whitespace()
            .skip_while(|w| *w != "Kafka")
            .skip(1)
            .nth(1)
            .expect("address in the serving line")
            .to_string();
        Server {
            child: Some(child),
            bootstrap: addr,
        }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    #[allow(dead_code)] // not every test binary stops its server by hand
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(DEADLINE)
            .expect("server did not stop within the deadline")
            .expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs one `gregor` client command against `bootstrap`, feeding `stdin`, bounded in time.
pub fn gregor(args: &[&str], bootstrap: &str, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(GREGOR);
    cmd.args(args)
        .arg("--bootstrap")
        .arg(bootstrap)
        .env("RUST_LOG", "warn");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn gregor");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(DEADLINE)
        .expect("gregor command timed out")
        .expect("output")
}

/// A command's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
