//! Writes every target's seeds (`veil_fuzz::seeds`) to `DIR/<target>/`:
//! `just fuzz` starts libFuzzer from them.

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/seeds".into()));
    for (name, _) in veil_fuzz::TARGETS {
        let target = dir.join(name);
        std::fs::create_dir_all(&target)?;
        for (i, seed) in veil_fuzz::seeds(name).iter().enumerate() {
            std::fs::write(target.join(format!("seed-{i}")), seed)?;
        }
    }
    Ok(())
}
