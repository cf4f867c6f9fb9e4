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

# Run one node on 127.0.0.1:9092 with its data in ./data.
server *ARGS:
    cargo run --release --bin gregor -- server {{ARGS}}

# Storage benchmarks (criterion); figures go in docs/benchmarks.md.
bench-storage:
    cargo bench -p gregor-storage --bench log -- --measurement-time 3
