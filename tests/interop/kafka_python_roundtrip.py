#!/usr/bin/env python3
"""kafka-python (pure Python) against a Gregor broker.

Usage: kafka_python_roundtrip.py <bootstrap>. Admin create/delete topics, produce with acks 0, 1
and all (acks=0 with the flush workaround below) and every compression, consume from the
beginning, an offset and a timestamp; exits non-zero on any mismatch.
"""
import sys
import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

BOOT = sys.argv[1]
RUN = uuid.uuid4().hex[:8]


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


def consume(topic, start, count, timeout_s=20.0):
    c = KafkaConsumer(bootstrap_servers=BOOT, enable_auto_commit=False, group_id=None,
                      request_timeout_ms=15000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, start)
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        for records in c.poll(timeout_ms=500).values():
            for m in records:
                out.append((m.offset, m.key.decode(), m.value.decode(), m.timestamp))
    c.close()
    return out


admin = KafkaAdminClient(bootstrap_servers=BOOT, request_timeout_ms=15000)
topic, doomed = f"kp-{RUN}", f"kp-doomed-{RUN}"
admin.create_topics([NewTopic(topic, 1, 1), NewTopic(doomed, 3, 1)])
check({topic, doomed} <= set(admin.list_topics()), "created topics listed")

expected = []
ts = 1_600_000_000_000
tp = TopicPartition(topic, 0)
probe = KafkaConsumer(bootstrap_servers=BOOT, group_id=None)


def wait_end_offset(want, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while probe.end_offsets([tp])[tp] < want and time.monotonic() < deadline:
        time.sleep(0.05)  # acks=0 has no reply to wait on; poll the end offset with a deadline
    return probe.end_offsets([tp])[tp]


# kafka-python 2.3.3 and acks=0: its futures resolve when the request is *queued*, and the
# connection is only registered for writing when a request expects a response
# (client_async.KafkaClient.send: `if not future.is_done: self._sending.add(conn)`). An acks=0
# Produce therefore sits in the connection's buffer until the next request that expects a reply
# goes out on the same connection, and close() drops it. Workaround with public settings only:
# a short metadata_max_age_ms makes the I/O thread send a Metadata request on that connection,
# which flushes the buffer; keep the producer open until the broker shows the records.
for acks in [0, 1, "all"]:
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        extra = {"metadata_max_age_ms": 100} if acks == 0 else {}
        p = KafkaProducer(bootstrap_servers=BOOT, acks=acks, compression_type=codec, linger_ms=5,
                          **extra)
        futures = []
        for i in range(4):
            key, value = f"{acks}-{codec}-{i}", f"value {i} {codec} acks={acks}"
            ts += 1000
            futures.append(p.send(topic, key=key.encode(), value=value.encode(), partition=0,
                                  timestamp_ms=ts))
            expected.append((len(expected), key, value, ts))
        p.flush(timeout=20)
        for f in futures:
            md = f.get(timeout=20)
            if acks == 0:
                check(md.offset == -1, f"acks=0 reports no offset, got {md.offset}")
            else:
                check(md.offset >= 0, f"acked offset for acks={acks} codec={codec}")
        end = wait_end_offset(len(expected))
        check(end == len(expected), f"acks={acks} codec={codec}: end offset {end}, "
                                    f"want {len(expected)}")
        p.close(timeout=20)
probe.close()

c = KafkaConsumer(bootstrap_servers=BOOT, group_id=None)
end = c.end_offsets([tp])[tp]
check(end == len(expected), f"end offset {end}, want {len(expected)}")
check(c.beginning_offsets([tp])[tp] == 0, "beginning offset")
want = expected[53]
found = c.offsets_for_times({tp: want[3]})[tp]
check(found is not None and found.offset == want[0] and found.timestamp == want[3],
      f"offsets_for_times {found} want {want}")
check(c.offsets_for_times({tp: ts + 10_000})[tp] is None, "no offset after the last timestamp")
c.close()

got = consume(topic, 0, len(expected))
check(got == expected, f"consume from beginning: {got[:2]} vs {expected[:2]}")
got = consume(topic, 30, len(expected) - 30)
check(got == expected[30:], "consume from offset 30")
got = consume(topic, want[0], len(expected) - want[0])
check(got == expected[want[0]:], "consume from the timestamp's offset")

admin.delete_topics([doomed])
check(doomed not in set(admin.list_topics()), "deleted topic gone")
admin.close()
print(f"ok: {len(expected)} records")
