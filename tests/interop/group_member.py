#!/usr/bin/env python3
"""One consumer-group member (confluent-kafka or kafka-python) for the Rust group tests.

Usage: group_member.py <ck|kp> <bootstrap> <topic> <group> <name>

Subscribes to <topic> in <group> with manual commits: every record is committed synchronously
(offset + 1) before the next one is handled. Prints one line per observable event, flushed at
once, which the Rust test waits on:

    assigned <name> <p,p,...>     a new assignment ("-" when empty)
    revoked <name>                partitions taken away
    record <name> <p> <offset> <value>
    committed <name> <p> <next offset>
    commit-failed <name> <p> <offset> <error>
    closed <name>

A line "close" on stdin (or stdin closing) makes it leave the group cleanly (consumer close) and
exit 0. The test kills it with SIGKILL to simulate a crash.
"""
import sys
import threading

CLIENT, BOOT, TOPIC, GROUP, NAME = sys.argv[1:6]
stop = threading.Event()


def say(*parts):
    print(" ".join(str(p) for p in parts), flush=True)


def watch_stdin():
    for line in sys.stdin:
        if line.strip() == "close":
            break
    stop.set()


def show_assignment(partitions):
    ps = sorted(partitions)
    say("assigned", NAME, ",".join(str(p) for p in ps) if ps else "-")


def run_confluent():
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({
        "bootstrap.servers": BOOT,
        "group.id": GROUP,
        "client.id": NAME,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 3000,
        "heartbeat.interval.ms": 300,
        "partition.assignment.strategy": "range",
    })
    c.subscribe(
        [TOPIC],
        on_assign=lambda _c, ps: show_assignment([p.partition for p in ps]),
        on_revoke=lambda _c, ps: say("revoked", NAME),
    )
    while not stop.is_set():
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            say("error", NAME, m.error())
            continue
        say("record", NAME, m.partition(), m.offset(), m.value().decode())
        try:
            c.commit(offsets=[TopicPartition(TOPIC, m.partition(), m.offset() + 1)],
                     asynchronous=False)
            say("committed", NAME, m.partition(), m.offset() + 1)
        except Exception as e:  # a commit refused by the coordinator is a test failure
            say("commit-failed", NAME, m.partition(), m.offset(), repr(e).replace(" ", "_"))
    c.close()


def run_kafka_python():
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            say("revoked", NAME)

        def on_partitions_assigned(self, assigned):
            show_assignment([tp.partition for tp in assigned])

    c = KafkaConsumer(
        bootstrap_servers=BOOT,
        group_id=GROUP,
        client_id=NAME,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=3000,
        heartbeat_interval_ms=300,
    )
    c.subscribe(topics=[TOPIC], listener=Listener())
    while not stop.is_set():
        for tp, msgs in c.poll(timeout_ms=100).items():
            for m in msgs:
                say("record", NAME, m.partition, m.offset, m.value.decode())
                try:
                    c.commit({TopicPartition(TOPIC, m.partition): OffsetAndMetadata(m.offset + 1, None, -1)})
                    say("committed", NAME, m.partition, m.offset + 1)
                except Exception as e:
                    say("commit-failed", NAME, m.partition, m.offset, repr(e).replace(" ", "_"))
    c.close()


threading.Thread(target=watch_stdin, daemon=True).start()
if CLIENT == "ck":
    run_confluent()
elif CLIENT == "kp":
    run_kafka_python()
else:
    sys.exit(f"unknown client {CLIENT}")
say("closed", NAME)
