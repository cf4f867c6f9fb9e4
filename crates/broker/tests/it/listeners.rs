//! Several named listeners (Kafka's `listeners` list): every request is answered with the
//! advertised endpoints of the listener it arrived on — the compose setup's host and in-network
//! clients each get addresses they can follow.

use std::sync::Arc;

use gregor_broker::config::{Endpoint, Listener};
use gregor_broker::{Broker, BrokerConfig};
use gregor_client::Connection;
use gregor_client::kafka_protocol::messages::{
    DescribeClusterRequest, FindCoordinatorRequest, MetadataRequest,
};
use gregor_client::kafka_protocol::protocol::StrBytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::common::DEADLINE;

fn named(name: &str, host: &str, port: u16) -> Listener {
    Listener {
        name: name.into(),
        endpoint: Endpoint {
            host: host.into(),
            port,
        },
    }
}

#[tokio::test]
async fn each_listener_advertises_its_own_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig {
        log_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    config.listener = Endpoint {
        host: "127.0.0.1".into(),
        port: 0,
    };
    config.listener_name = "INTERNAL".into();
    config.extra_listeners = vec![named("EXTERNAL", "127.0.0.1", 0)];
    config.advertised_listeners = vec![
        named("INTERNAL", "node-1", 9092),
        named("EXTERNAL", "127.0.0.1", 19092),
    ];
    config.listener_security_protocol_map = vec![
        ("INTERNAL".into(), "PLAINTEXT".into()),
        ("EXTERNAL".into(), "PLAINTEXT".into()),
    ];
    config.validate().unwrap();

    let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let external = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_addr = internal.local_addr().unwrap().to_string();
    let external_addr = external.local_addr().unwrap().to_string();
    let broker = Arc::new(Broker::open(config, internal.local_addr().unwrap()).unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(gregor_broker::server::run_listeners(
        vec![("INTERNAL".into(), internal), ("EXTERNAL".into(), external)],
        Arc::clone(&broker),
        shutdown.clone(),
    ));

    for (addr, host, port) in [
        (&internal_addr, "node-1", 9092),
        (&external_addr, "127.0.0.1", 19092),
    ] {
        let mut c = tokio::time::timeout(DEADLINE, Connection::connect(addr))
            .await
            .unwrap()
            .unwrap();
        let md = c
            .send(&MetadataRequest::default().with_topics(None))
            .await
            .unwrap();
        assert_eq!(md.brokers.len(), 1);
        assert_eq!(md.brokers[0].host.as_str(), host, "metadata via {addr}");
        assert_eq!(md.brokers[0].port, port, "metadata via {addr}");

        let dc = c.send(&DescribeClusterRequest::default()).await.unwrap();
        assert_eq!(
            dc.brokers[0].host.as_str(),
            host,
            "describe cluster via {addr}"
        );
        assert_eq!(dc.brokers[0].port, port);

        let fc = c
            .send_version(
                &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
                2,
            )
            .await
            .unwrap();
        assert_eq!(fc.host.as_str(), host, "find coordinator via {addr}");
        assert_eq!(fc.port, port);
    }

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("shutdown in time")
        .unwrap()
        .unwrap();
}
