//! The fuzz targets' smoke run, on stable and without libFuzzer (CI):
//! each target's body gets its seeds, every kept regression input
//! (`regressions/<target>/`, crashes found by `just fuzz` and fixed) and a
//! fixed number of pseudo-random and mutated inputs from a fixed seed, so
//! every run feeds the same bytes.

use std::{
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    path::{Path, PathBuf},
};

/// Random inputs per target.
const RANDOM: usize = 2_000;
/// Mutations of seeds and regressions per target.
const MUTATED: usize = 6_000;
/// Longest random input.
const MAX_RANDOM_LEN: usize = 600;

/// xorshift64*: the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn new(name: &str) -> Self {
        // FNV-1a of the name: each target its own sequence.
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A few libFuzzer-style mutations of `input`.
fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        let byte = at.min(out.len().saturating_sub(1));
        match rng.below(8) {
            0 if !out.is_empty() => out[byte] ^= 1 << rng.below(8),
            1 if !out.is_empty() => out[byte] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => {
                let n = 1 + rng.below(8);
                let bytes = rng.bytes(n);
                out.splice(at..at, bytes);
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 => out.truncate(at),
            5 if !out.is_empty() => {
                // A 4-byte length or count: boundary values.
                let v: u32 = [0, 1, 0xff, 0x100, 0xffff, 0x1_0000, u32::MAX][rng.below(7)];
                let end = (at + 4).min(out.len());
                let bytes = if rng.below(2) == 0 { v.to_be_bytes() } else { v.to_le_bytes() };
                out.splice(at.min(end)..end, bytes);
            }
            6 if !others.is_empty() => {
                // Splice in part of another input.
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                out.splice(at..at, other[from..to].iter().copied());
            }
            _ => {
                let n = rng.below(out.len() + 1);
                let copy = out[..n].to_vec();
                out.extend_from_slice(&copy);
            }
        }
    }
    out
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The kept regression inputs of `name`, in name order.
fn regressions(name: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir().join("regressions").join(name)) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("a directory entry").path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).expect("a readable regression"))).collect()
}

fn run(name: &str, body: fn(&[u8]), what: &str, input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(input))) {
        let hex: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
        eprintln!("target {name} panicked on {what} ({} bytes): {hex}", input.len());
        resume_unwind(panic);
    }
}

fn smoke(name: &str) {
    let started = std::time::Instant::now();
    let body = veil_fuzz::TARGETS.iter().find(|(n, _)| *n == name).expect("a listed target").1;
    let seeds = veil_fuzz::seeds(name);
    assert!(!seeds.is_empty(), "{name} has seeds");
    let mut known = seeds.clone();
    for (i, seed) in seeds.iter().enumerate() {
        run(name, body, &format!("seed {i}"), seed);
    }
    for (path, input) in regressions(name) {
        run(name, body, &path, &input);
        known.push(input);
    }
    let mut rng = Rng::new(name);
    for i in 0..RANDOM {
        let len = rng.below(MAX_RANDOM_LEN);
        let mut input = rng.bytes(len);
        // Half of them start like a seed: its mode byte, or a whole prefix.
        if i % 2 == 1 {
            let seed = &known[rng.below(known.len())];
            let keep = rng.below(seed.len().min(8) + 1);
            input.splice(0..0, seed[..keep].iter().copied());
        }
        run(name, body, &format!("random input {i}"), &input);
    }
    for i in 0..MUTATED {
        let input = mutate(&mut rng, &known[i % known.len()], &known);
        run(name, body, &format!("mutation {i}"), &input);
    }
    eprintln!("{name}: {} inputs in {:.1?}", known.len() + RANDOM + MUTATED, started.elapsed());
}

macro_rules! smoke_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                smoke(stringify!($name));
            }
        )*

        #[test]
        fn every_target_is_smoked_and_has_a_fuzz_binary() {
            let smoked = [$(stringify!($name)),*];
            let listed: Vec<&str> = veil_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
            assert_eq!(listed, smoked);
            let mut binaries: Vec<String> = std::fs::read_dir(dir().join("fuzz_targets"))
                .expect("fuzz_targets/")
                .map(|e| e.expect("an entry").path().file_stem().expect("a name").to_string_lossy().into_owned())
                .collect();
            binaries.sort();
            assert_eq!(binaries, smoked);
            let manifest = std::fs::read_to_string(dir().join("Cargo.toml")).expect("Cargo.toml");
            for name in smoked {
                assert!(manifest.contains(&format!("name = \"{name}\"")), "{name} is a [[bin]] of Cargo.toml");
            }
        }
    };
}

smoke_tests!(
    advert,
    backup,
    ble_addr,
    ble_link,
    device_link,
    device_offer,
    entry,
    envelope,
    frame,
    group_frame,
    handshake,
    link,
    metadata,
    noise,
    reconcile,
    sealed,
);

/// The crafted modes reach the decoders behind the seals: if the fixture's
/// sealing ever drifts from veil's, the targets would only see refusals.
#[test]
fn crafted_inputs_get_through_the_seals() {
    veil_fuzz::check_crafted();
}
