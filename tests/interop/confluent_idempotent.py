#!/usr/bin/env python3
"""confluent-kafka (librdkafka 2.x) idempotent producer against a Gregor broker.

Usage: confluent_idempotent.py <bootstrap> <topic> <partitions> <records>. Produces <records>
records with enable.idempotence=true and 5 requests in flight over many small batches, waits
for every delivery report, then consumes every partition from the beginning and checks: every
record exactly once (no duplicates, none missing) and each partition in production order.
Exits non-zero on any mismatch; prints "ok: N records" on success.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

BOOT, TOPIC = sys.argv[1], sys.argv[2]
PARTITIONS, N = int(sys.argv[3]), int(sys.argv[4])
DEADLINE_S = 60.0


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


errors = []
delivered = {}


def on_delivery(err, msg):
    if err is not None:
        errors.append(str(err))
    else:
        delivered[int(msg.value().decode())] = (msg.partition(), msg.offset())


p = Producer({
    "bootstrap.servers": BOOT,
    "broker.address.family": "v4",
    "enable.idempotence": True,
    "max.in.flight.requests.per.connection": 5,
    "acks": "all",
    # Small batches so several are in flight per partition at once.
    "linger.ms": 1,
    "batch.num.messages": 7,
    "message.timeout.ms": 30000,
})
for i in range(N):
    while True:
        try:
            p.produce(TOPIC, value=str(i).encode(), key=f"k{i}".encode(),
                      partition=i % PARTITIONS, on_delivery=on_delivery)
            break
        except BufferError:
            p.poll(0.1)
    p.poll(0)
left = p.flush(DEADLINE_S)
check(left == 0, f"{left} records not delivered in time")
check(not errors, f"delivery errors: {errors[:5]}")
check(len(delivered) == N, f"{len(delivered)} of {N} delivered")

c = Consumer({"bootstrap.servers": BOOT, "broker.address.family": "v4", "group.id": "unused",
              "enable.auto.commit": False})
c.assign([TopicPartition(TOPIC, part, 0) for part in range(PARTITIONS)])
seen = {part: [] for part in range(PARTITIONS)}
total = 0
deadline = time.monotonic() + DEADLINE_S
while total < N and time.monotonic() < deadline:
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        raise KafkaException(m.error())
    seen[m.partition()].append((m.offset(), int(m.value().decode())))
    total += 1
# Anything beyond N (a duplicate) would arrive right behind; give it a short look.
extra_deadline = time.monotonic() + 1.0
while time.monotonic() < extra_deadline:
    m = c.poll(0.2)
    if m is not None and not m.error():
        seen[m.partition()].append((m.offset(), int(m.value().decode())))
c.close()

values = [v for part in seen.values() for _, v in part]
check(len(values) == N, f"consumed {len(values)} records, expected {N}")
check(len(set(values)) == N, "duplicates in the log")
for part, recs in seen.items():
    vals = [v for _, v in recs]
    check(vals == sorted(vals), f"partition {part} out of production order")
    check(all(v % PARTITIONS == part for v in vals), f"partition {part} has foreign records")
    for off, v in recs:
        check(delivered[v] == (part, off), f"record {v}: delivered {delivered[v]}, stored {(part, off)}")
print(f"ok: {N} records")
