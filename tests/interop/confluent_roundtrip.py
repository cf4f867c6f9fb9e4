#!/usr/bin/env python3
"""confluent-kafka (librdkafka 2.x) against a Gregor broker.

Usage: confluent_roundtrip.py <bootstrap>. Creates topics through the admin API, produces with
every acks value and compression, consumes from the beginning, an offset and a timestamp
(offsets_for_times), deletes a topic, and exits non-zero on any mismatch.
"""
import sys
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

BOOT = sys.argv[1]
RUN = uuid.uuid4().hex[:8]


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


def consume(topic, start_offset, count, timeout_s=20.0):
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "unused", "enable.auto.commit": False,
                  "socket.timeout.ms": 10000})
    c.assign([TopicPartition(topic, 0, start_offset)])
    out = []
    import time
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        out.append((m.offset(), m.key().decode(), m.value().decode(), m.timestamp()[1]))
    c.close()
    return out


admin = AdminClient({"bootstrap.servers": BOOT})
topic = f"ck-{RUN}"
doomed = f"ck-doomed-{RUN}"
futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                        config={"retention.ms": "86400000"}),
                               NewTopic(doomed, num_partitions=2, replication_factor=1)])
for t, f in futures.items():
    f.result(timeout=20)
md = admin.list_topics(timeout=20)
check(topic in md.topics and doomed in md.topics, "created topics listed")
check(len(md.topics[doomed].partitions) == 2, "doomed has 2 partitions")

res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
for r, f in res.items():
    cfg = f.result(timeout=20)
    check(cfg["retention.ms"].value == "86400000", f"retention.ms override: {cfg['retention.ms'].value}")

expected = []
ts = 1_700_000_000_000
for acks in ["0", "1", "all"]:
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        p = Producer({"bootstrap.servers": BOOT, "acks": acks, "compression.type": codec,
                      "linger.ms": 5})
        errors = []
        for i in range(4):
            key, value = f"{acks}-{codec}-{i}", f"value {i} {codec} acks={acks}"
            ts += 1000
            p.produce(topic, key=key, value=value, partition=0, timestamp=ts,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
            expected.append((len(expected), key, value, ts))
        left = p.flush(20)
        check(left == 0 and not errors, f"flush acks={acks} codec={codec}: left={left} errors={errors}")

got = consume(topic, 0, len(expected))
check(got == expected, f"consume from beginning: {got[:3]}... vs {expected[:3]}...")
got = consume(topic, 25, len(expected) - 25)
check(got == expected[25:], "consume from offset 25")

c = Consumer({"bootstrap.servers": BOOT, "group.id": "unused"})
want = expected[30]
found = c.offsets_for_times([TopicPartition(topic, 0, want[3])], timeout=20)
check(found[0].offset == want[0], f"offsets_for_times -> {found[0].offset}, want {want[0]}")
found = c.offsets_for_times([TopicPartition(topic, 0, want[3] - 1)], timeout=20)
check(found[0].offset == want[0], "timestamp between records resolves to the next one")
low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=20)
check((low, high) == (0, len(expected)), f"watermarks {(low, high)}")
c.close()
got = consume(topic, want[0], len(expected) - want[0])
check(got == expected[want[0]:], "consume from the timestamp's offset")

for t, f in admin.delete_topics([doomed]).items():
    f.result(timeout=20)
check(doomed not in admin.list_topics(timeout=20).topics, "deleted topic gone")
print(f"ok: {len(expected)} records")
