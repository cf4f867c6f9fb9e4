//! Loopback ports for child processes, reserved across every test process running at once.
//!
//! A child binds its ports itself (and again on every restart), so the test cannot hold the
//! listener. Asking the kernel for `127.0.0.1:0` and releasing it let another test take the
//! port in between: outgoing connections of parallel tests draw from the same ephemeral range.
//! So ports come from below the kernel's ephemeral range (`ip_local_port_range`), where nothing
//! is handed out implicitly, and each is claimed with an exclusive lock on a file under the
//! temp dir. The lock is held until the [`Reservation`] drops; if the test process dies, the
//! kernel releases it.

#![allow(dead_code)] // not every test binary uses every helper

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use anyhow::{Context, bail};

/// Ports below this are left to well-known services.
const LOW: u16 = 20_000;

/// Claimed ports (in the order asked for, through `Deref`); released on drop.
#[derive(Debug)]
pub struct Reservation {
    ports: Vec<u16>,
    _locks: Vec<File>,
}

impl std::ops::Deref for Reservation {
    type Target = [u16];
    fn deref(&self) -> &[u16] {
        &self.ports
    }
}

fn lock_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join("gregor-test-ports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Claims `port` if no other test holds it and it can be bound right now.
fn claim(dir: &std::path::Path, port: u16) -> anyhow::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(e)) => return Err(e.into()),
    }
    // Something outside the tests may be using it.
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        return Ok(None);
    }
    Ok(Some(file))
}

/// The range candidates come from: `[LOW, ephemeral low)`.
fn range() -> anyhow::Result<(u16, u16)> {
    let high = ephemeral_low();
    if high <= LOW + 1_000 {
        bail!("the ephemeral port range starts at {high}: no room for test ports below it");
    }
    Ok((LOW, high))
}

/// `n` free loopback ports.
pub fn reserve(n: usize) -> anyhow::Result<Reservation> {
    let dir = lock_dir()?;
    let (low, high) = range()?;
    let span = u32::from(high - low);
    // Start where other processes are unlikely to be (spread by PID), then walk the range.
    let start = std::process::id() % span;
    let mut ports = Vec::with_capacity(n);
    let mut locks = Vec::with_capacity(n);
    for i in 0..span {
        if ports.len() == n {
            break;
        }
        let port = low + ((start + i) % span) as u16;
        if let Some(lock) = claim(&dir, port)? {
            ports.push(port);
            locks.push(lock);
        }
    }
    if ports.len() < n {
        bail!(
            "only {} of {n} test ports free in {low}..{high}",
            ports.len()
        );
    }
    Ok(Reservation {
        ports,
        _locks: locks,
    })
}

/// Exactly `ports`, or `None` if any of them is taken.
pub fn reserve_exact(ports: &[u16]) -> anyhow::Result<Option<Reservation>> {
    let dir = lock_dir()?;
    let mut locks = Vec::with_capacity(ports.len());
    for &port in ports {
        match claim(&dir, port)? {
            Some(lock) => locks.push(lock),
            None => return Ok(None),
        }
    }
    Ok(Some(Reservation {
        ports: ports.to_vec(),
        _locks: locks,
    }))
}

/// A base port for `gregor dev --port BASE --nodes 3`, whose twelve ports (Kafka, controller,
/// replication and admin: BASE+i, +100+i, +200+i, +300+i) are free and reserved. Candidates are
/// 400 apart, all below the ephemeral range; the first one tried is spread by PID.
pub fn dev_base() -> anyhow::Result<(u16, Reservation)> {
    let (low, high) = range()?;
    let bases = (high - low) / 400 - 1;
    let start = (std::process::id() % u32::from(bases)) as u16;
    for i in 0..bases {
        let base = low + ((start + i) % bases) * 400;
        let wanted: Vec<u16> = (0..3)
            .flat_map(|i| [base + i, base + 100 + i, base + 200 + i, base + 300 + i])
            .collect();
        if let Some(r) = reserve_exact(&wanted)? {
            return Ok((base, r));
        }
    }
    bail!("no free dev port range in {low}..{high}")
}
