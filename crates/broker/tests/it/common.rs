//! Test harness: an in-process broker on 127.0.0.1:0 with a temp data dir, plus helpers to
//! build requests and to run real clients as child processes with deadlines.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gregor_broker::{Broker, BrokerConfig};
use gregor_client::Connection;
use gregor_client::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use gregor_client::kafka_protocol::messages::{
    ApiVersionsRequest, MetadataRequest, ProduceRequest, ProduceResponse, TopicName,
};
use gregor_client::kafka_protocol::protocol::StrBytes;
use gregor_client::kafka_protocol::records::Compression;
use gregor_client::records::{ProducerRecord, encode_batch};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single wait in a test.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestBroker {
    pub addr: String,
    pub broker: Arc<Broker>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<gregor_broker::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, f).await
    }

    /// Starts a broker on an existing data dir (restart tests).
    pub async fn start_in(dir: tempfile::TempDir, f: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("gregor_broker=debug")
            .try_init();
        let mut config = BrokerConfig {
            log_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        config.listener = gregor_broker::config::Endpoint {
            host: "127.0.0.1".into(),
            port: 0,
        };
        f(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = listener.local_addr().unwrap();
        let broker = Arc::new(Broker::open(config, bound).unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gregor_broker::run(
            listener,
            Arc::clone(&broker),
            shutdown.clone(),
        ));
        TestBroker {
            addr: bound.to_string(),
            broker,
            shutdown,
            task: Some(task),
            dir,
        }
    }

    /// Stops the broker and waits for a clean shutdown; returns the data dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("shutdown in time")
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub async fn connect(&self) -> Connection {
        tokio::time::timeout(DEADLINE, Connection::connect(&self.addr))
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn connect_raw(&self) -> Connection {
        Connection::connect_raw(&self.addr).await.unwrap()
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.broker
            .create_topic(name, partitions, 1, Default::default(), false)
            .unwrap();
    }

    pub fn log_end_offset(&self, topic: &str, partition: i32) -> i64 {
        self.broker
            .partition(topic, partition)
            .unwrap()
            .log
            .read()
            .log_end_offset()
    }

    /// Proves the broker still serves new connections.
    pub async fn assert_alive(&self) {
        let mut c = self.connect().await;
        let resp = c
            .send(&MetadataRequest::default().with_topics(None))
            .await
            .unwrap();
        assert_eq!(resp.brokers.len(), 1);
        let resp = c
            .send_version(&ApiVersionsRequest::default(), 0)
            .await
            .unwrap();
        assert_eq!(resp.error_code, 0);
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn record(value: &str, timestamp: i64) -> ProducerRecord {
    ProducerRecord {
        key: Some(Bytes::from(format!("k-{value}"))),
        value: Some(Bytes::from(value.to_string())),
        headers: vec![],
        timestamp,
    }
}

pub fn batch(values: &[&str], timestamp: i64) -> Bytes {
    let records: Vec<_> = values.iter().map(|v| record(v, timestamp)).collect();
    encode_batch(&records, Compression::None).unwrap()
}

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn produce_request(acks: i16, parts: Vec<(&str, i32, Option<Bytes>)>) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (topic, partition, records) in parts {
        let data = PartitionProduceData::default()
            .with_index(partition)
            .with_records(records);
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(topics)
}

/// Produces one batch and returns (error code, base offset).
pub async fn produce(
    conn: &mut Connection,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64) {
    let resp: ProduceResponse = conn
        .send(&produce_request(1, vec![(topic, partition, Some(records))]))
        .await
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Waits (on the partition's high-watermark watch, with a deadline) until `hw >= at_least`.
pub async fn wait_for_hw(tb: &TestBroker, topic: &str, partition: i32, at_least: i64) {
    let mut rx = tb.broker.partition(topic, partition).unwrap().subscribe();
    tokio::time::timeout(DEADLINE, rx.wait_for(|hw| *hw >= at_least))
        .await
        .unwrap_or_else(|_| panic!("{topic}-{partition} never reached {at_least}"))
        .unwrap();
}

/// Path of the repo-top `tests/` folder.
pub fn repo_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests")
}

/// Output of a child process run with a deadline.
pub struct Output {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a program with a deadline; the child is killed if it overruns (and on drop).
pub async fn run_with_deadline(
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    deadline: Duration,
) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e} (run tests/setup.sh)"));
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).await.unwrap();
        drop(pipe);
    }
    match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.unwrap();
            Output {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => panic!("{program} {args:?} did not finish within {deadline:?}"),
    }
}
