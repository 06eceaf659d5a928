//! The parent's side of a crash: runs a child on a store, kills it with
//! SIGKILL at a chosen point and collects every entry it reported committed.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use veil_crypto::envelope::EntryHash;

use crate::fixture::{CAPPED, CHECKPOINT_VAR, COMMITTED, Config, DIR_VAR, DURABILITY_VAR, FORKING, SEED_VAR};

/// How long the parent waits for any one line before failing.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub(crate) enum KillAt {
    /// Right after spawning: the child may not even have opened the store.
    Spawn,
    /// After reading this many committed-entry lines.
    Lines(usize),
}

/// Kills and reaps the child however the test ends.
pub(crate) struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn parse_line(line: &str) -> Option<EntryHash> {
    let (_, hex_hash) = line.split_once(COMMITTED)?;
    let bytes = hex::decode(hex_hash.trim()).unwrap_or_else(|e| panic!("malformed line {line:?}: {e}"));
    Some(EntryHash(bytes.try_into().unwrap_or_else(|b| panic!("malformed hash {b:?}"))))
}

/// Runs one child on the store in `dir`, kills it at `kill`, and returns
/// every entry it reported as committed (including lines still in the pipe).
pub(crate) fn run_child(dir: &Path, seed: u64, config: Config, kill: KillAt) -> Vec<EntryHash> {
    let stderr_path = dir.join(format!("child-{seed}.stderr"));
    let _no_open = FORKING.blocking_lock();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child::crash_child", "--nocapture", "--ignored", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .env(SEED_VAR, seed.to_string())
        .env(DURABILITY_VAR, config.durability_name())
        .env(CHECKPOINT_VAR, config.checkpoint_pages.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    drop(_no_open);
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let child_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let mut reported = Vec::new();
    if let KillAt::Lines(k) = kill {
        while reported.len() < k {
            match rx.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    assert!(!line.contains(CAPPED), "the child stopped at its cap before {k} lines");
                    reported.extend(parse_line(&line));
                }
                Err(e) => panic!(
                    "no line from the child ({e:?}) after {} lines; its stderr:\n{}",
                    reported.len(),
                    child_stderr()
                ),
            }
        }
    }
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child died of SIGKILL, not on its own ({status}); stderr:\n{}",
        child_stderr()
    );
    // Lines written before the kill but not read yet were committed too.
    reported.extend(rx.iter().filter_map(|line| parse_line(&line)));
    reader.join().unwrap();
    reported
}
