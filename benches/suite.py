#!/usr/bin/env python3
"""The side-by-side benchmark suite of issue #8 (`just bench`; docs/benchmarks.md).

Every figure is measured in each of `--rounds` (>= 3) rounds; a round runs every system once, one
after the other, so the noise of this shared 2-core machine spreads over all of them and a
round's ratios compare runs made minutes apart. Per round:

1. raw disk: `gregor perf disk` writes the bytes of one throughput run to a file in the data
   directory (buffered, no fsync; and buffered + one final fsync), and the same bytes three
   times to three files (what an RF=3 cluster writes for that run);
2. Gregor, three nodes from `gregor dev` (RF=3, min.insync.replicas=2), 1 and 12 partitions:
   produce throughput with acks=0, 1, all; consume the acks=all topic; produce latency at a
   fixed 20k records/s with acks=all; idle and peak RSS of every node; cluster start to serving;
3. Gregor, one `gregor server` (RF=1), acks=1, 1 and 12 partitions; node start to serving;
4. NATS JetStream, three `nats-server` on 127.0.0.1, an R3 file stream, `benches/natsbench`
   (async publish with 256 acks outstanding, and sync publish for its ack latency);
5. Tansu 0.6 with its memory engine (only when `--tansu` points at a binary), acks=1, 1 partition,
   driven by the same `gregor perf produce`.

Producers use librdkafka's defaults: batch.size 1000000, linger.ms 5, and (like Kafka's Java
client) 5 requests in flight per connection. Records are 1 KiB.

Runs do not overlap each other's disk work: a deleted topic's files must be gone before the next
run, and every measured run of every system starts with sync(2), so the writeback of what an
earlier run left dirty does not land inside a later one.

Every server binds 127.0.0.1 only, is started by this script and stopped by its PID (SIGTERM,
then SIGKILL after 10 s) on exit, also on Ctrl-C. Every child command has a time cap. Results go
to `<out>/results.json` (every run) and `<out>/results.md` (min / median / max, ratios).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIB = 1024
MIB = 1024 * 1024

# Ports: far from Kafka's and NATS's defaults and below the ephemeral range.
GREGOR_DEV_PORT = 19092  # uses 19092-19094, 19192-19194, 19292-19294
SINGLE_PORT = 19500
SINGLE_CONTROLLER = 19501
NATS_CLIENT = 14222  # 14222-14224; cluster 16222-16224; monitoring 18222-18224
TANSU_PORT = 19600


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- processes, stopped by PID


class Procs:
    """Every server this script starts, so each is stopped by its PID on every exit path."""

    def __init__(self):
        self.children = []  # Popen
        self.pids = []  # extra PIDs (gregor dev's nodes) with the executable they must run

    def start(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.children.append(p)
        return p

    def adopt(self, pid, exe):
        self.pids.append((pid, exe))

    @staticmethod
    def _runs(pid, exe):
        try:
            return Path(f"/proc/{pid}/exe").resolve().name == Path(exe).name
        except OSError:
            return False

    def stop(self, p, grace=10.0):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.children:
            self.children.remove(p)

    def reap_adopted(self):
        # Nodes of a `gregor dev` that did not stop them (it was killed): by PID, if still ours.
        for pid, exe in self.pids:
            if self._runs(pid, exe):
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()

    def stop_all(self):
        for p in list(reversed(self.children)):
            self.stop(p)
        self.reap_adopted()


PROCS = Procs()


def port_free(port):
    with socket.socket() as s:
        # As the servers bind (tokio and Go set SO_REUSEADDR): TIME_WAIT left by a previous
        # run does not count as in use.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_line(proc, needle, timeout, lines=None):
    """Reads proc's stdout until a line contains `needle`; returns (line, seconds waited)."""
    t0 = time.monotonic()
    result = {}

    def reader():
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if lines is not None:
                lines.append(line)
            if needle in line and "line" not in result:
                result["line"] = line
                result["t"] = time.monotonic() - t0
                return

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    th.join(timeout)
    if "line" not in result:
        raise RuntimeError(f"no '{needle}' within {timeout} s (exit status {proc.poll()})")
    return result["line"], result["t"]


def drain(proc, lines=None):
    """Keeps reading proc's stdout so it never blocks on a full pipe."""

    def reader():
        for raw in proc.stdout:
            if lines is not None:
                lines.append(raw.decode(errors="replace").rstrip("\n"))

    threading.Thread(target=reader, daemon=True).start()


def run_json(args, cap):
    """Runs a client command with a time cap; returns its last stdout line as JSON."""
    t0 = time.monotonic()
    p = subprocess.run(args, capture_output=True, timeout=cap)
    if p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, args))} failed ({p.returncode}): {p.stderr.decode()[-2000:]}"
        )
    out = p.stdout.decode().strip().splitlines()
    r = json.loads(out[-1])
    r["wall_s"] = time.monotonic() - t0
    return r


def rss_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class RssSampler:
    """Samples VmRSS of `pids` every 200 ms in a thread; keeps the maximum of each."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = {pid: 0.0 for pid in pids}
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self.loop, daemon=True)

    def sample(self):
        for pid in self.pids:
            r = rss_mib(pid)
            if r is not None:
                self.peak[pid] = max(self.peak[pid], r)

    def loop(self):
        self.sample()
        while not self.stop_ev.wait(0.2):
            self.sample()

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.th.join()
        self.sample()


# ---------------------------------------------------------------- the systems


class Suite:
    def __init__(self, a):
        self.a = a
        self.gregor = a.gregor
        self.runs = []  # every measurement: dict(round, system, figure, ...)
        self.cap = a.run_cap

    def record(self, rnd, system, figure, **values):
        entry = {"round": rnd, "system": system, "figure": figure, **values}
        self.runs.append(entry)
        shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in values.items()}
        log(f"  {system} {figure}: {shown}")

    def perf_produce(self, bootstrap, topic, acks, partitions, records, extra=()):
        args = [
            self.gregor, "perf", "produce", "--bootstrap", bootstrap, "--topic", topic,
            "--num-records", str(records), "--record-size", str(self.a.record_size),
            "--acks", acks, "--partitions", str(partitions), "--batch-size", "1000000",
            "--linger-ms", "5", "--max-in-flight", "5", "--json", *extra,
        ]
        self.settle()
        return run_json(args, self.cap)

    def topic_create(self, bootstrap, topic, partitions, rf):
        args = [self.gregor, "topic", "create", topic, "--bootstrap-server", bootstrap,
                "--partitions", str(partitions), "--replication-factor", str(rf)]
        if rf == 3:
            args += ["--config", "min.insync.replicas=2"]
        subprocess.run(args, check=True, capture_output=True, timeout=60)
        # Warm-up, not measured: a few acks=all records in every partition. Right after the
        # creation a follower may ask a leader that has not applied the new partition yet; it
        # then backs off replica.fetch.backoff.ms (1 s, as in Kafka) and the first acks=all
        # produce waits for it. The figures are about the steady state.
        run_json([self.gregor, "perf", "produce", "--bootstrap", bootstrap, "--topic", topic,
                  "--num-records", str(3 * partitions), "--record-size", "100", "--acks", "all",
                  "--partitions", str(partitions), "--batch-size", "100", "--json"], 60)

    def topic_delete(self, bootstrap, topic, log_dirs=()):
        """Deletes the topic; with `log_dirs`, also waits (bounded) until no broker keeps a
        partition directory of it, so its file deletion does not overlap the next run."""
        subprocess.run([self.gregor, "topic", "delete", topic, "--bootstrap-server", bootstrap],
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + 60
        while any(d.is_dir() and any(e.name.startswith(f"{topic}-") for e in d.iterdir())
                  for d in log_dirs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the files of deleted topic {topic} are still there after 60 s")
            time.sleep(0.1)

    @staticmethod
    def settle():
        """Starts a measured run from a clean page cache: sync(2) writes back what earlier runs
        left dirty, so the kernel's writeback of run N does not land in the middle of run N+1.
        Done before every measured run of every system alike."""
        os.sync()

    # -- raw disk
    def disk(self, rnd, data):
        # One copy of a throughput run's bytes, and three copies (the bytes an RF=3 cluster writes
        # for it: one file per replica, one after another). On a VM whose free memory goes back to
        # the host (virtio-balloon free page reporting), one copy fits in memory the previous run
        # just freed and measures little more than memcpy; three copies also pay for fresh page
        # cache, as the brokers do (docs/benchmarks.md, "Raw-disk ratio").
        nbytes = self.a.records * self.a.record_size
        for name, extra in (("write", []), ("write_fsync", ["--fsync"]),
                            ("write_3copies", ["--copies", "3"]),
                            ("write_3copies_fsync", ["--copies", "3", "--fsync"])):
            args = [self.gregor, "perf", "disk", "--dir", str(data), "--bytes", str(nbytes), "--json"] + extra
            self.settle()
            r = run_json(args, self.cap)
            self.record(rnd, "disk", name, mb_per_sec=r["mb_per_sec"])

    # -- Gregor, 3 nodes
    def gregor_cluster(self, rnd, data):
        ddir = data / f"gregor3-r{rnd}"
        bootstrap = ",".join(f"127.0.0.1:{GREGOR_DEV_PORT + i}" for i in range(3))
        lines = []
        dev = PROCS.start(
            [self.gregor, "dev", "--nodes", "3", "--port", str(GREGOR_DEV_PORT), "--data-dir", str(ddir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            _, started = wait_line(dev, "Ctrl-C stops every node", 60, lines)
            pids = [int(l.split("pid ")[1].split(",")[0]) for l in lines if l.startswith("node ")]
            for pid in pids:
                PROCS.adopt(pid, self.gregor)
            drain(dev)
            self.record(rnd, "gregor3", "start_to_serving", seconds=started)
            n = self.a.records
            node_dirs = [ddir / f"node-{i}" for i in (1, 2, 3)]
            for parts in (1, 12):
                for acks in ("0", "1", "all"):
                    topic = f"t{parts}-a{acks}-r{rnd}"
                    self.topic_create(bootstrap, topic, parts, 3)
                    if acks == "0" and parts == 1:
                        # Idle: topics exist, nothing produced yet.
                        self.record(rnd, "gregor3", "rss_idle", mib=max(rss_mib(p) or 0 for p in pids))
                    with RssSampler(pids) as s:
                        r = self.perf_produce(bootstrap, topic, acks, parts, n)
                    self.record(rnd, "gregor3", f"produce_p{parts}_acks{acks}",
                                rps=r["records_per_sec"], mb_per_sec=r["mb_per_sec"],
                                p99_ms=r["latency_p99_ms"], rss_peak_mib=max(s.peak.values()))
                    if acks == "all":
                        self.settle()
                        with RssSampler(pids) as s:
                            c = run_json([self.gregor, "perf", "consume", "--bootstrap", bootstrap,
                                          "--topic", topic, "--num-records", str(n), "--json"], self.cap)
                        self.record(rnd, "gregor3", f"consume_p{parts}",
                                    rps=c["records_per_sec"], mb_per_sec=c["mb_per_sec"],
                                    rss_peak_mib=max(s.peak.values()))
                    self.topic_delete(bootstrap, topic, node_dirs)
                topic = f"l{parts}-r{rnd}"
                self.topic_create(bootstrap, topic, parts, 3)
                lat_n = int(self.a.latency_rate * self.a.latency_seconds)
                with RssSampler(pids) as s:
                    r = self.perf_produce(bootstrap, topic, "all", parts, lat_n,
                                          ["--throughput", str(self.a.latency_rate)])
                self.record(rnd, "gregor3", f"latency_p{parts}_20k",
                            rps=r["records_per_sec"], p50_ms=r["latency_p50_ms"],
                            p99_ms=r["latency_p99_ms"], p999_ms=r["latency_p999_ms"],
                            max_ms=r["latency_max_ms"], rss_peak_mib=max(s.peak.values()))
                self.topic_delete(bootstrap, topic, node_dirs)
        finally:
            PROCS.stop(dev, grace=30)
            PROCS.reap_adopted()
            shutil.rmtree(ddir, ignore_errors=True)

    # -- Gregor, 1 node
    def gregor_single(self, rnd, data):
        ddir = data / f"gregor1-r{rnd}"
        bootstrap = f"127.0.0.1:{SINGLE_PORT}"
        srv = PROCS.start(
            [self.gregor, "server", "--listeners", f"PLAINTEXT://{bootstrap}", "--log-dirs", str(ddir),
             "--controller-listener", f"127.0.0.1:{SINGLE_CONTROLLER}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        try:
            _, started = wait_line(srv, "serving Kafka on", 60)
            drain(srv)
            self.record(rnd, "gregor1", "start_to_serving", seconds=started)
            self.record(rnd, "gregor1", "rss_idle", mib=rss_mib(srv.pid))
            for parts in (1, 12):
                topic = f"s{parts}-r{rnd}"
                self.topic_create(bootstrap, topic, parts, 1)
                with RssSampler([srv.pid]) as s:
                    r = self.perf_produce(bootstrap, topic, "1", parts, self.a.records)
                self.record(rnd, "gregor1", f"produce_p{parts}_acks1",
                            rps=r["records_per_sec"], mb_per_sec=r["mb_per_sec"],
                            p99_ms=r["latency_p99_ms"], rss_peak_mib=max(s.peak.values()))
                self.topic_delete(bootstrap, topic, [ddir])
        finally:
            PROCS.stop(srv)
            shutil.rmtree(ddir, ignore_errors=True)

    # -- NATS JetStream R3
    def nats(self, rnd, data):
        ndir = data / f"nats-r{rnd}"
        procs = []
        try:
            for i in range(3):
                d = ndir / f"n{i + 1}"
                d.mkdir(parents=True)
                routes = ", ".join(f"nats://127.0.0.1:{16222 + j}" for j in range(3) if j != i)
                conf = d / "nats.conf"
                conf.write_text(
                    f"server_name: n{i + 1}\nlisten: 127.0.0.1:{NATS_CLIENT + i}\n"
                    f"http: 127.0.0.1:{18222 + i}\n"
                    f"jetstream {{\n  store_dir: {d / 'js'}\n  max_memory_store: 1GB\n  max_file_store: 20GB\n}}\n"
                    f"cluster {{\n  name: bench\n  listen: 127.0.0.1:{16222 + i}\n  routes: [{routes}]\n}}\n"
                )
                procs.append(PROCS.start([self.a.nats_server, "-c", str(conf)],
                                         stdout=subprocess.DEVNULL, stderr=open(d / "log", "w"),
                                         start_new_session=True))
            t0 = time.monotonic()
            for i in range(3):
                self.wait_healthz(18222 + i, t0 + 60)
            self.record(rnd, "nats", "rss_idle", mib=max(rss_mib(p.pid) or 0 for p in procs))
            url = f"nats://127.0.0.1:{NATS_CLIENT}"
            self.settle()
            with RssSampler([p.pid for p in procs]) as s:
                r = self.natsbench(url, f"ASYNC{rnd}", self.a.nats_records, "async", 256)
            self.record(rnd, "nats", "r3_async", rps=r["records_per_sec"], mb_per_sec=r["mb_per_sec"],
                        rss_peak_mib=max(s.peak.values()))
            if self.a.nats_sync_records > 0:
                self.settle()
                r = self.natsbench(url, f"SYNC{rnd}", self.a.nats_sync_records, "sync")
                self.record(rnd, "nats", "r3_sync", rps=r["records_per_sec"],
                            p50_ms=r["latency_p50_ms"], p99_ms=r["latency_p99_ms"])
        finally:
            for p in procs:
                PROCS.stop(p)
            shutil.rmtree(ndir, ignore_errors=True)

    def wait_healthz(self, port, deadline):
        # JetStream answers /healthz only once its meta group has a leader and it is current.
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server on monitoring port {port} not healthy in time")
            time.sleep(0.1)

    def natsbench(self, url, stream, msgs, mode, window=None):
        args = [self.a.natsbench, url, stream, "3", str(msgs), str(self.a.record_size), mode]
        if window:
            args.append(str(window))
        # A fresh R3 stream can briefly lack a leader right after the cluster formed: one retry.
        try:
            return run_json(args, self.cap)
        except RuntimeError as e:
            log(f"  natsbench failed once, retrying: {str(e)[-300:]}")
            return run_json(args, self.cap)

    # -- Tansu (memory engine)
    def tansu(self, rnd, data):
        tdir = data / f"tansu-r{rnd}"
        tdir.mkdir(parents=True)
        url = f"tcp://127.0.0.1:{TANSU_PORT}"
        srv = PROCS.start(
            [self.a.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            cwd=tdir, stdout=subprocess.DEVNULL, stderr=open(tdir / "log", "w"), start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", TANSU_PORT), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or srv.poll() is not None:
                        raise RuntimeError("tansu did not start listening")
                    time.sleep(0.1)
            bootstrap = f"127.0.0.1:{TANSU_PORT}"
            topic = f"tansu-r{rnd}"
            subprocess.run([self.a.tansu, "topic", "create", topic, "--broker", url, "--partitions", "1"],
                           capture_output=True, timeout=60, cwd=tdir)
            r = self.perf_produce(bootstrap, topic, "1", 1, self.a.records)
            self.record(rnd, "tansu_memory", "produce_p1_acks1", rps=r["records_per_sec"],
                        mb_per_sec=r["mb_per_sec"], p99_ms=r["latency_p99_ms"],
                        rss_end_mib=rss_mib(srv.pid))
        finally:
            PROCS.stop(srv)
            shutil.rmtree(tdir, ignore_errors=True)


# ---------------------------------------------------------------- summary


def mmm(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    return {"min": v[0], "median": statistics.median(v), "max": v[-1], "n": len(v)}


def summarize(runs, rounds):
    by = {}
    for r in runs:
        by.setdefault((r["system"], r["figure"]), []).append(r)

    def vals(system, figure, key):
        return [r.get(key) for r in by.get((system, figure), [])]

    def per_round(system, figure, key):
        return {r["round"]: r.get(key) for r in by.get((system, figure), [])}

    rows = []  # (label, unit, mmm)
    fig = {}

    def add(label, system, figure, key, unit, scale=1.0):
        m = mmm([v * scale if v is not None else None for v in vals(system, figure, key)])
        fig[label] = m
        rows.append((label, unit, m))

    add("disk write, buffered", "disk", "write", "mb_per_sec", "MB/s")
    add("disk write, buffered + fsync", "disk", "write_fsync", "mb_per_sec", "MB/s")
    add("disk write, buffered, 3 copies", "disk", "write_3copies", "mb_per_sec", "MB/s")
    add("disk write, buffered + fsync, 3 copies", "disk", "write_3copies_fsync", "mb_per_sec", "MB/s")
    for parts in (1, 12):
        for acks in ("0", "1", "all"):
            add(f"Gregor RF=3, {parts} part., acks={acks}", "gregor3", f"produce_p{parts}_acks{acks}", "rps", "rec/s")
            add(f"Gregor RF=3, {parts} part., acks={acks} (MB/s)", "gregor3", f"produce_p{parts}_acks{acks}", "mb_per_sec", "MB/s")
        add(f"Gregor RF=3, {parts} part., consume", "gregor3", f"consume_p{parts}", "rps", "rec/s")
        add(f"Gregor RF=3, {parts} part., consume (MB/s)", "gregor3", f"consume_p{parts}", "mb_per_sec", "MB/s")
        for q in ("p50", "p99", "p999", "max"):
            add(f"Gregor RF=3, {parts} part., 20k/s acks=all, {q}", "gregor3", f"latency_p{parts}_20k", f"{q}_ms", "ms")
        add(f"Gregor RF=3, {parts} part., 20k/s achieved", "gregor3", f"latency_p{parts}_20k", "rps", "rec/s")
    for parts in (1, 12):
        add(f"Gregor RF=1, {parts} part., acks=1", "gregor1", f"produce_p{parts}_acks1", "rps", "rec/s")
        add(f"Gregor RF=1, {parts} part., acks=1 (MB/s)", "gregor1", f"produce_p{parts}_acks1", "mb_per_sec", "MB/s")
    add("NATS JetStream R3, async publish", "nats", "r3_async", "rps", "rec/s")
    add("NATS JetStream R3, async publish (MB/s)", "nats", "r3_async", "mb_per_sec", "MB/s")
    add("NATS JetStream R3, sync publish", "nats", "r3_sync", "rps", "rec/s")
    add("NATS JetStream R3, sync publish p99", "nats", "r3_sync", "p99_ms", "ms")
    add("Tansu 0.6 memory, 1 part., acks=1", "tansu_memory", "produce_p1_acks1", "rps", "rec/s")
    add("Tansu 0.6 memory, 1 part., acks=1 (MB/s)", "tansu_memory", "produce_p1_acks1", "mb_per_sec", "MB/s")
    add("Gregor 3-node cluster start to serving", "gregor3", "start_to_serving", "seconds", "s")
    add("Gregor single node start to serving", "gregor1", "start_to_serving", "seconds", "s")
    add("Gregor RSS idle, largest node (3 nodes)", "gregor3", "rss_idle", "mib", "MiB")
    add("Gregor RSS idle (1 node)", "gregor1", "rss_idle", "mib", "MiB")
    peak3 = [max([r.get("rss_peak_mib") or 0 for r in runs if r["system"] == "gregor3" and r["round"] == i],
                 default=0) for i in range(1, rounds + 1)]
    m = mmm([p for p in peak3 if p])
    fig["Gregor RSS peak under load, largest node"] = m
    rows.append(("Gregor RSS peak under load, largest node", "MiB", m))
    add("NATS RSS idle, largest node", "nats", "rss_idle", "mib", "MiB")
    add("NATS RSS peak under load, largest node", "nats", "r3_async", "rss_peak_mib", "MiB")

    # Ratios within a round (side by side), then min/median/max over the rounds.
    ratios = []

    def ratio(label, num, den, den_scale=1.0, target=None, higher_is_better=True):
        n = per_round(*num)
        d = per_round(*den)
        rs = [n[k] / (d[k] * den_scale) for k in n if k in d and n[k] and d[k]]
        m = mmm(rs)
        met = None
        if m and target is not None:
            met = m["median"] >= target if higher_is_better else m["median"] <= target
        ratios.append((label, m, target, met))

    for parts in (1, 12):
        ratio(f"RF=3 acks=all ({parts} part.) ÷ NATS R3 async", ("gregor3", f"produce_p{parts}_acks{'all'}", "rps"),
              ("nats", "r3_async", "rps"), target=5.0)
        ratio(f"RF=3 acks=all ({parts} part.) MB/s ÷ (disk buffered ÷ 3)", ("gregor3", f"produce_p{parts}_acksall", "mb_per_sec"),
              ("disk", "write", "mb_per_sec"), den_scale=1 / 3, target=0.40)
        ratio(f"RF=3 acks=all ({parts} part.) MB/s ÷ (disk buffered+fsync ÷ 3)", ("gregor3", f"produce_p{parts}_acksall", "mb_per_sec"),
              ("disk", "write_fsync", "mb_per_sec"), den_scale=1 / 3, target=0.40)
        ratio(f"RF=3 acks=all ({parts} part.) MB/s ÷ (disk buffered, 3 copies ÷ 3)", ("gregor3", f"produce_p{parts}_acksall", "mb_per_sec"),
              ("disk", "write_3copies", "mb_per_sec"), den_scale=1 / 3, target=0.40)
        ratio(f"RF=3 acks=all ({parts} part.) MB/s ÷ (disk buffered+fsync, 3 copies ÷ 3)", ("gregor3", f"produce_p{parts}_acksall", "mb_per_sec"),
              ("disk", "write_3copies_fsync", "mb_per_sec"), den_scale=1 / 3, target=0.40)
    for parts in (1, 12):
        ratio(f"RF=1 acks=1 ({parts} part.) ÷ Tansu memory (1 part.)", ("gregor1", f"produce_p{parts}_acks1", "rps"),
              ("tansu_memory", "produce_p1_acks1", "rps"), target=1.0)
    return rows, ratios, fig


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "rec/s":
        return f"{v:,.0f}"
    if unit in ("MB/s", "MiB"):
        return f"{v:,.1f}"
    if unit == "ms":
        return f"{v:.2f}"
    return f"{v:.2f}"


def markdown(rows, ratios, meta):
    out = [f"Suite run {meta['started']}, {meta['rounds']} rounds, {meta['records']:,} × {meta['record_size']} B records "
           f"per throughput run, load average before: {meta['load_before']}, after: {meta['load_after']}.", "",
           "| Figure | Unit | min | median | max |", "|---|---|---|---|---|"]
    for label, unit, m in rows:
        if m is None:
            continue
        out.append(f"| {label} | {unit} | {fmt(m['min'], unit)} | {fmt(m['median'], unit)} | {fmt(m['max'], unit)} |")
    out += ["", "Ratios, computed per round (systems run side by side) then min / median / max over the rounds:", "",
            "| Ratio | min | median | max | target | met (median) |", "|---|---|---|---|---|---|"]
    for label, m, target, met in ratios:
        if m is None:
            out.append(f"| {label} | — | — | — | {target} | not assessed |")
            continue
        out.append(f"| {label} | {m['min']:.2f} | {m['median']:.2f} | {m['max']:.2f} | ≥ {target} | {'yes' if met else 'no'} |")
    out += ["", "Absolute targets (median over the rounds):", "",
            "| Target | median | limit | met |", "|---|---|---|---|"]
    for label, key, limit in (
        ("p99 produce latency, 20k/s acks=all, 1 partition", "Gregor RF=3, 1 part., 20k/s acks=all, p99", 10.0),
        ("p99 produce latency, 20k/s acks=all, 12 partitions", "Gregor RF=3, 12 part., 20k/s acks=all, p99", 10.0),
        ("idle RSS, largest of 3 nodes (MiB)", "Gregor RSS idle, largest node (3 nodes)", 50.0),
        ("RSS under load, largest node (MiB)", "Gregor RSS peak under load, largest node", 256.0),
        ("single node start to serving (s)", "Gregor single node start to serving", 1.0),
        ("3-node cluster start to serving (s)", "Gregor 3-node cluster start to serving", 1.0),
    ):
        m = meta["figures"].get(key)
        if m is None:
            out.append(f"| {label} | — | ≤ {limit} | not assessed |")
        else:
            out.append(f"| {label} | {m['median']:.2f} | ≤ {limit} | {'yes' if m['median'] <= limit else 'no'} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller runs (about a third of the time)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records", type=int, default=None, help="records per throughput run (default 200,000; quick 50,000)")
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--latency-rate", type=int, default=20000)
    ap.add_argument("--latency-seconds", type=float, default=None, help="default 10; quick 3")
    ap.add_argument("--nats-records", type=int, default=None, help="default 200,000; quick 50,000")
    ap.add_argument("--nats-sync-records", type=int, default=None, help="default 3,000; quick 1,000")
    ap.add_argument("--run-cap", type=float, default=120.0, help="seconds any one client command may take")
    ap.add_argument("--gregor", default=None, help="gregor binary (default $CARGO_TARGET_DIR/release/gregor)")
    ap.add_argument("--natsbench", default=None, help="natsbench binary (default $CARGO_TARGET_DIR/release/natsbench)")
    ap.add_argument("--nats-server", default=shutil.which("nats-server") or "/usr/sbin/nats-server")
    ap.add_argument("--tansu", default=os.environ.get("TANSU"), help="tansu binary; Tansu is skipped without it")
    ap.add_argument("--skip", default="", help="comma-separated: disk,gregor3,gregor1,nats,tansu")
    ap.add_argument("--data-dir", default=None, help="parent of the servers' data (default: a temp dir on /tmp)")
    ap.add_argument("--out", default=str(ROOT / "benches" / "results"))
    a = ap.parse_args()
    if a.rounds < 3:
        ap.error("--rounds must be at least 3 (every figure is reported as min/median/max)")
    a.records = a.records or (50_000 if a.quick else 200_000)
    a.latency_seconds = a.latency_seconds or (3.0 if a.quick else 10.0)
    a.nats_records = a.nats_records or (50_000 if a.quick else 200_000)
    a.nats_sync_records = a.nats_sync_records if a.nats_sync_records is not None else (1_000 if a.quick else 3_000)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    a.gregor = a.gregor or str(target / "release" / "gregor")
    a.natsbench = a.natsbench or str(target / "release" / "natsbench")
    skip = set(filter(None, a.skip.split(",")))
    if a.tansu is None or not Path(a.tansu).exists():
        skip.add("tansu")
    for need, what in ((a.gregor, "gregor (cargo build --release -p gregor-cli)"),):
        if not Path(need).exists():
            sys.exit(f"missing {need}: build {what}")
    if "nats" not in skip:
        for need, what in ((a.natsbench, "natsbench (cd benches/natsbench && cargo build --release)"),
                           (a.nats_server, "nats-server (apt-get install nats-server)")):
            if not Path(need).exists():
                sys.exit(f"missing {need}: install {what}, or --skip nats")
    ports = [GREGOR_DEV_PORT + d + i for d in (0, 100, 200) for i in range(3)] + [SINGLE_PORT, SINGLE_CONTROLLER]
    ports += [p + i for p in (NATS_CLIENT, 16222, 18222) for i in range(3)] + [TANSU_PORT]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        sys.exit(f"ports in use on 127.0.0.1: {busy}")

    # Estimate: throughput runs at ~40 MB/s worst case, latency runs as long as asked, NATS at
    # ~20k msg/s async and ~1.4k msg/s sync, plus start/stop. Each command is capped at --run-cap.
    mb = a.records * a.record_size / MIB
    per_round = (2 * mb / 500 + 6 * mb / 40 + 2 * mb / 80 + 2 * a.latency_seconds + 2 * mb / 40 + 25
                 + (0 if "nats" in skip else a.nats_records / 20_000 + a.nats_sync_records / 1_400 + 10)
                 + (0 if "tansu" in skip else mb / 100 + 5))
    commands = 16 + (0 if "nats" in skip else 2) + (0 if "tansu" in skip else 1)
    log(f"estimated {per_round * a.rounds / 60:.1f} min ({a.rounds} rounds); every command capped at "
        f"{a.run_cap:.0f} s, so at most {commands * a.rounds * a.run_cap / 60:.0f} min; skipping: {sorted(skip) or 'nothing'}")

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="gregor-bench-", dir=a.data_dir))
    suite = Suite(a)
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": a.rounds, "records": a.records,
            "record_size": a.record_size, "load_before": os.getloadavg()[0], "args": vars(a)}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    try:
        for rnd in range(1, a.rounds + 1):
            log(f"round {rnd}/{a.rounds} (load average {os.getloadavg()[0]:.2f})")
            for name, fn in (("disk", suite.disk), ("gregor3", suite.gregor_cluster),
                             ("gregor1", suite.gregor_single), ("nats", suite.nats), ("tansu", suite.tansu)):
                if name not in skip:
                    log(f" {name}")
                    fn(rnd, data)
    finally:
        PROCS.stop_all()
        shutil.rmtree(data, ignore_errors=True)
        meta["load_after"] = os.getloadavg()[0]
        meta["elapsed_s"] = time.monotonic() - t0
        rows, ratios, fig = summarize(suite.runs, a.rounds)
        (out / "results.json").write_text(json.dumps(
            {"meta": meta, "runs": suite.runs, "summary": fig,
             "ratios": [{"ratio": l, **(m or {}), "target": t, "met": met} for l, m, t, met in ratios]},
            indent=1))
        md = markdown(rows, ratios, {**meta, "figures": fig})
        (out / "results.md").write_text(md)
        print(md)
        log(f"done in {meta['elapsed_s'] / 60:.1f} min; {out / 'results.json'}, {out / 'results.md'}")


if __name__ == "__main__":
    main()
