# Thin wrappers over cargo, the CLI and (later) docker compose. `just` is optional: every recipe
# is one command you can run by hand. Install with `cargo install just`.

default: fmt clippy test doc

# Everything CI runs (the README's test command).
ci:
    ./tests/run.sh

fmt:
    cargo fmt --all

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

test:
    cargo nextest run --workspace

doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# A local cluster: N broker+controller processes, Kafka on 9092.. (docs/dev.md; the README's run command).
dev *ARGS:
    cargo run --release -p gregor-cli -- dev {{ARGS}}

# Run one node on 127.0.0.1:9092 with its data in ./data.
server *ARGS:
    cargo run --release --bin gregor -- server {{ARGS}}

# Storage benchmarks (criterion) and the storage / raw table; figures go in docs/benchmarks.md.
bench-storage:
    cargo bench -p gregor-storage --bench storage -- --measurement-time 3 --warm-up-time 1
    python3 crates/storage/benches/ratios.py "${CARGO_TARGET_DIR:-target}"

# 100 connections producing and fetching for 60 s; fails on any error or RSS growth.
bench-load seconds="60" connections="100":
    cargo bench -p gregor-broker --bench load -- --seconds {{seconds}} --connections {{connections}}

# Controller failover: kill -9 the active controller 20 times, p50/p99 to the next commit.
bench-controller-failover kills="20":
    GREGOR_BENCH_KILLS={{kills}} cargo test --release -p gregor-cli --test controller_failover -- --ignored failover_bench --nocapture

# Partition-leader failover: kill -9 the leader N times under acks=all; unavailability and ISR rejoin.
bench-leader-failover kills="10":
    GREGOR_BENCH_KILLS={{kills}} cargo test --release -p gregor-cli --test durability -- --ignored failover_unavailability_bench --nocapture

# Side by side: Gregor RF=3 and RF=1, raw disk writes, NATS JetStream R3 (Tansu with
# TANSU=/path/to/tansu); 3 rounds, min/median/max and ratios (docs/benchmarks.md). `--quick`.
bench *ARGS:
    benches/run.sh {{ARGS}}

# A cargo-fuzz target for a while (needs `cargo install cargo-fuzz`; stable via RUSTC_BOOTSTRAP).
fuzz target seconds="60":
    cd tests/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O {{target}} -- -max_total_time={{seconds}} -rss_limit_mb=2048

# `gregor cluster describe` against local controllers (default: `gregor dev`'s).
dev-describe controller="127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194":
    cargo run --bin gregor -- cluster describe --controller {{controller}}

# ---- docker compose: three nodes of gregor:dev (deploy/compose.yaml, docs/quickstart.md) ----
# `compose` is Compose v2 (`docker compose`) when installed, else Debian's docker-compose v1.
compose := `docker compose version >/dev/null 2>&1 && echo "docker compose" || echo "docker-compose"` + " -p gregor -f deploy/compose.yaml"
bootstrap := "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"

# Build the image (host release build + local Debian base image).
image:
    deploy/build-image.sh

# Build the image and start the three nodes; waits until every node is healthy.
up: image
    {{compose}} up -d
    deploy/compose-wait.sh gregor deploy/compose.yaml 120

# Stop the nodes (SIGTERM, clean shutdown); `just down -v` also deletes their data volumes.
down *ARGS:
    {{compose}} down {{ARGS}}

ps:
    {{compose}} ps

logs *ARGS:
    {{compose}} logs {{ARGS}}

# kill -9 one node: `just kill node-2`.
kill NODE:
    {{compose}} kill -s SIGKILL {{NODE}}

start NODE:
    {{compose}} start {{NODE}}

# SIGSTOP-like freeze of every process of a node (docker pause), and back.
pause NODE:
    {{compose}} pause {{NODE}}

unpause NODE:
    {{compose}} unpause {{NODE}}

# Topics with leaders and ISR (via the host listener), and the controller quorum.
describe:
    cargo run -q --release --bin gregor -- topic describe --bootstrap-server {{bootstrap}}
    {{compose}} exec -T node-1 gregor cluster describe --controller node-1:9093,node-2:9093,node-3:9093

# Live failover view (`gregor cluster watch`: leaders, ISR, HW, events; docs/dev.md). `q` quits.
watch:
    {{compose}} exec node-1 gregor cluster watch --controller node-1:9093,node-2:9093,node-3:9093

# The quickstart in one go: topic with RF=3 and min.insync.replicas=2, a durability check with
# two leader kills, the report.
demo: up
    cargo run -q --release --bin gregor -- topic create demo --bootstrap-server {{bootstrap}} --partitions 3 --replication-factor 3 --config min.insync.replicas=2
    cargo run -q --release --bin gregor -- verify --bootstrap-server {{bootstrap}} --topic demo --acks all --compose --faults leader-kill --fault-interval 10s --duration 40s --seed 1
