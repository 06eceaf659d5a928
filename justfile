# veil task runner. Install just with `pip install rust-just`.

# The reference app's demo: five nodes on loopback and the chat UI.
run:
    cargo run -p veil-app -- demo

demo: run

# The demo without the UI: prints a conversation and exits.
demo-script:
    cargo run -p veil-app -- demo --script

# The core demo: two parties, link → handshake → ratcheted messages.
core-demo:
    cargo run -p veil-integration-tests --example core_demo

test:
    cargo test --workspace

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks; each prints one JSON line. The storage one prefills a million
# entries first (a few minutes).
bench:
    cargo bench -p veil-crypto --bench protocol 2>/dev/null | tail -n 1
    cargo bench -p veil-storage --bench append 2>/dev/null | tail -n 1
    cargo bench -p veil-transports --bench frames 2>/dev/null | tail -n 1
    cargo bench -p veil-transports --bench relay 2>/dev/null | tail -n 1
    cargo bench -p veil-actors --bench frames 2>/dev/null | tail -n 1
    cargo bench -p veil-actors --bench groups 2>/dev/null | tail -n 1

# What CI runs.
ci:
    bash .ci/run
