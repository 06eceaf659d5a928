//! Cross-crate tests for veil. The library itself is empty on purpose: the
//! content is in `tests/` (for example `protocol_vectors.rs`, which recomputes
//! every test vector of `docs/PROTOCOL.md`) and `examples/` (`core_demo`, the
//! README's run command).
