//! [`LogManager`]: owns a data directory of partition logs and their background work.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::sync_dir;
use crate::config::LogConfig;
use crate::error::{IoContext, Result};
use crate::log::PartitionLog;

/// A partition log shared between request handlers and background tasks.
pub type SharedLog = Arc<RwLock<PartitionLog>>;

/// How often the background loop checks `flush.ms`.
const FLUSH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often the background loop persists moved high watermarks (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` default).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// File name of the data directory's lock file (Kafka's name).
pub const LOCK_FILE: &str = ".lock";

/// An exclusive advisory lock (`flock`) on a data directory's [`LOCK_FILE`], held for as long as
/// this value lives. The kernel drops it when the process dies (kill -9 included), so a stale
/// lock file never blocks a restart; a process that is still alive, even frozen by SIGSTOP or a
/// cgroup freeze, keeps it.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock of `dir` (which must exist) without waiting: fails with
    /// [`crate::StorageError::DirectoryLocked`] if anyone else holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx("open lock file", &path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| crate::StorageError::DirectoryLocked {
                path: path.clone(),
                source: e.into(),
            },
        )?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A topic partition; its directory is `<topic>-<partition>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The directory name, `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name; topics may contain `-`, so the last one separates the partition.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        if topic.is_empty() || partition < 0 {
            return None;
        }
        Some(TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Owns a data directory: loads every partition directory at open, creates and deletes
/// partitions, runs retention, `flush.ms` and checkpoints in the background, and closes
/// everything cleanly.
#[derive(Debug)]
pub struct LogManager {
    data_dir: PathBuf,
    default_config: LogConfig,
    logs: Mutex<HashMap<TopicPartition, SharedLog>>,
    /// Held until the manager is dropped (declared last, so released after the logs): one
    /// owner per data directory.
    _lock: DirLock,
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl LogManager {
    /// Opens `data_dir`, creating it if needed, and every partition directory in it (running
    /// recovery where the last shutdown was not clean). Takes the directory's lock first and
    /// fails with [`crate::StorageError::DirectoryLocked`] while another owner (a second
    /// process started before the first one died) holds it: two owners would each recover,
    /// checkpoint and append to the same segments, and one's acknowledged writes could be cut
    /// by the other's recovery or overwritten by its appends.
    pub fn open(
        data_dir: impl Into<PathBuf>,
        default_config: LogConfig,
        now_ms: i64,
    ) -> Result<Self> {
        let data_dir = data_dir.into();
        fs::create_dir_all(&data_dir).ctx("create data dir", &data_dir)?;
        let lock = DirLock::acquire(&data_dir)?;
        let mut logs = HashMap::new();
        for entry in fs::read_dir(&data_dir).ctx("list data dir", &data_dir)? {
            let entry = entry.ctx("list data dir", &data_dir)?;
            if !entry.file_type().ctx("stat", &entry.path())?.is_dir() {
                continue;
            }
            let Some(tp) = TopicPartition::from_dir_name(&entry.file_name().to_string_lossy())
            else {
                continue;
            };
            let log = PartitionLog::open(entry.path(), default_config.clone(), now_ms)?;
            logs.insert(tp, Arc::new(RwLock::new(log)));
        }
        Ok(LogManager {
            data_dir,
            default_config,
            logs: Mutex::new(logs),
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The configuration used for partitions loaded at open.
    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }

    /// The log of `tp`, if it exists.
    pub fn get(&self, tp: &TopicPartition) -> Option<SharedLog> {
        self.logs.lock().get(tp).cloned()
    }

    /// The log of `tp`, created with `config` if it does not exist (an existing log keeps its
    /// configuration; use [`PartitionLog::set_config`] to change it).
    pub fn get_or_create(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<SharedLog> {
        let mut logs = self.logs.lock();
        if let Some(log) = logs.get(tp) {
            return Ok(log.clone());
        }
        let log = PartitionLog::open(self.data_dir.join(tp.dir_name()), config, now_ms)?;
        sync_dir(&self.data_dir)?;
        let log = Arc::new(RwLock::new(log));
        logs.insert(tp.clone(), log.clone());
        Ok(log)
    }

    /// Deletes the partition and its directory. Handles still held elsewhere see a closed log.
    pub fn delete(&self, tp: &TopicPartition) -> Result<()> {
        let Some(log) = self.logs.lock().remove(tp) else {
            return Ok(());
        };
        log.write().delete_in_place()
    }

    /// All partitions, sorted.
    pub fn partitions(&self) -> Vec<(TopicPartition, SharedLog)> {
        let mut all: Vec<_> = self
            .logs
            .lock()
            .iter()
            .map(|(tp, log)| (tp.clone(), log.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// One retention pass over every partition; returns the number of segments deleted. Errors
    /// are logged per partition and do not stop the pass.
    pub fn retention_pass(&self, now_ms: i64) -> usize {
        let mut deleted = 0;
        for (tp, log) in self.partitions() {
            match log.write().apply_retention(now_ms) {
                Ok(outcome) => deleted += outcome.segments_deleted,
                Err(e) => tracing::error!(partition = %tp, error = %e, "retention failed"),
            }
        }
        deleted
    }

    /// Applies `flush.ms` to every partition.
    pub fn flush_pass(&self, now_ms: i64) {
        for (tp, log) in self.partitions() {
            if let Err(e) = log.write().maybe_flush(now_ms) {
                tracing::error!(partition = %tp, error = %e, "flush failed");
            }
        }
    }

    /// Persists checkpoints whose high watermark moved. Each is taken under the log's read lock
    /// and written (with its fsyncs) after releasing it, so appends and reads do not wait for
    /// the disk.
    pub fn checkpoint_pass(&self) {
        for (tp, log) in self.partitions() {
            let snapshot = log.read().checkpoint_if_changed();
            if let Some(snapshot) = snapshot
                && let Err(e) = snapshot.write()
            {
                tracing::error!(partition = %tp, error = %e, "checkpoint failed");
            }
        }
    }

    /// Runs retention every `retention_check_interval`, `flush.ms` checks every second and
    /// high-watermark checkpoints every 5 s until `cancel` fires. The file I/O runs on the
    /// blocking pool so it never stalls the async workers.
    pub async fn run_background(
        self: Arc<Self>,
        cancel: CancellationToken,
        retention_check_interval: Duration,
    ) {
        let mut retention = tokio::time::interval(retention_check_interval);
        let mut flush = tokio::time::interval(FLUSH_CHECK_INTERVAL);
        let mut checkpoint = tokio::time::interval(CHECKPOINT_INTERVAL);
        for t in [&mut retention, &mut flush, &mut checkpoint] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        loop {
            let me = self.clone();
            let job: Box<dyn FnOnce() + Send> = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = retention.tick() => Box::new(move || { me.retention_pass(now_ms()); }),
                _ = flush.tick() => Box::new(move || me.flush_pass(now_ms())),
                _ = checkpoint.tick() => Box::new(move || me.checkpoint_pass()),
            };
            if let Err(e) = tokio::task::spawn_blocking(job).await {
                tracing::error!(error = %e, "background storage task panicked");
            }
        }
    }

    /// Closes every log cleanly (flush, indexes, checkpoint, clean-shutdown marker). Keeps going
    /// after an error and returns the first one.
    pub fn shutdown(&self) -> Result<()> {
        let mut first_err = None;
        for (tp, log) in self.partitions() {
            if let Err(e) = log.write().close_in_place() {
                tracing::error!(partition = %tp, error = %e, "close failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
