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

# BLE on real BlueZ in a QEMU VM (needs qemu-system-x86 linux-image-amd64
# busybox-static bluez bluez-test-tools): the radio layer and a veil link,
# then two offline veil nodes talking across an adapter power cycle and a
# bluetoothd restart, on Debian 12's backports kernel (fetched once into
# target/vm-kernel: 6.1 lacks an L2CAP fix the power cycle needs). The suite
# runs these too.
test-ble:
    transports/ble/vm/fetch-kernel.sh target/vm-kernel
    VEIL_FULL_TESTS=1 cargo test -p veil-ble --test bluez_vm --test bluez_mock
    VEIL_FULL_TESTS=1 cargo test -p veil-integration-tests --test ble_vm -- --nocapture

# Needs a nightly toolchain and `cargo install cargo-fuzz`. libFuzzer
# starts from the targets' seeds and kept regressions and grows
# corpus/<target>/. A crash stops it, its input in artifacts/<target>/:
# fix it, then keep the input in regressions/<target>/ (the smoke replays it).
# `flags` go to cargo fuzz run (e.g. "-s none": no AddressSanitizer, two to
# four times faster on the crypto-heavy targets; veil's code is safe Rust).
# Every fuzz target (integration-tests/fuzz: each decoder of network, air,
# link or QR input) for a million executions, or only `targets` (names).
fuzz runs="1000000" targets="" flags="":
    #!/usr/bin/env bash
    set -euo pipefail
    cd integration-tests/fuzz
    cargo run -q --release --no-default-features --example seeds -- target/seeds
    for t in {{ if targets == "" { "$(cargo +nightly fuzz list --fuzz-dir .)" } else { targets } }}; do
        mkdir -p "corpus/$t"
        dirs=("corpus/$t" "target/seeds/$t")
        [ -d "regressions/$t" ] && dirs+=("regressions/$t")
        log="target/fuzz-$t.log"
        if cargo +nightly fuzz run {{flags}} --fuzz-dir . "$t" "${dirs[@]}" -- -runs={{runs}} >"$log" 2>&1; then
            echo "$t: $(grep '^Done' "$log")"
        else
            tail -n 40 "$log"
            exit 1
        fi
    done

# The fuzz targets' smoke run on stable, as CI runs it: seeds, kept
# regressions, thousands of pseudo-random and mutated inputs per target
# (`just fuzz 20000` is a short libFuzzer run instead).
fuzz-smoke:
    cargo test --release --no-default-features --manifest-path integration-tests/fuzz/Cargo.toml

# The kill -9 soak through the daemons (app/tests/soak.rs): 10 000 messages
# while the receiver is killed 20 times and the sender 5; no acknowledged
# message lost, none twice, order kept. VEIL_SOAK_SEED replays a schedule.
soak:
    cargo test -p veil-app --test soak -- --ignored --nocapture

# The BLE link in that VM, as JSON: time to connect with the ble plug-in,
# ping round trips, a bulk transfer (reported, not targeted: emulated air).
bench-ble:
    cargo bench -p veil-ble --bench link 2>/dev/null | tail -n 1

# The whole suite three times pinned to one core, then once while two busy
# loops keep both cores occupied: no test may depend on the machine's
# speed. Every run must pass; a failure is a bug to fix, never to retry.
stress:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo test --workspace --no-run
    for run in 1 2 3; do
        echo "== stress: run $run of 4, pinned to one core"
        taskset -c 0 cargo test --workspace
    done
    echo "== stress: run 4 of 4, both cores kept busy"
    hogs=()
    for core in 0 1; do
        timeout 3600 taskset -c "$core" sh -c 'while :; do :; done' &
        hogs+=($!)
    done
    trap 'kill "${hogs[@]}" 2>/dev/null || true' EXIT
    cargo test --workspace
    echo "== stress: 4 of 4 runs passed"

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks; each prints one JSON line. The storage and one-to-one ones
# prefill a million entries per store first (a few minutes); the LAN one
# needs root (network namespaces) and says so otherwise.
bench:
    cargo bench -p veil-crypto --bench protocol 2>/dev/null | tail -n 1
    cargo bench -p veil-storage --bench append 2>/dev/null | tail -n 1
    cargo bench -p veil-transports --bench frames 2>/dev/null | tail -n 1
    cargo bench -p veil-transports --bench relay 2>/dev/null | tail -n 1
    cargo bench -p veil-actors --bench frames 2>/dev/null | tail -n 1
    cargo bench -p veil-actors --bench groups 2>/dev/null | tail -n 1
    cargo bench -p veil-actors --bench one_to_one 2>/dev/null | tail -n 1
    cargo bench -p veil-actors --bench device_join 2>/dev/null | tail -n 1
    cargo bench -p veil-app --bench lan 2>/dev/null | tail -n 1
    cargo bench -p veil-tor --bench onion 2>/dev/null | tail -n 1

# What CI runs.
ci:
    bash .ci/run
