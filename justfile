# veil task runner. Install just with `pip install rust-just`.

# The core demo: two parties, link → handshake → ratcheted messages.
run:
    cargo run -p veil-integration-tests --example core_demo

demo: run

test:
    cargo test --workspace

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks; the last line of each is a JSON report.
bench:
    cargo bench -p veil-crypto --bench protocol 2>/dev/null | tail -n 1

# What CI runs.
ci:
    bash .ci/run
