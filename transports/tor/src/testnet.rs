//! A whole private Tor network on loopback, for tests: three directory
//! authorities and four relays, run from the system's `tor` binary
//! (Debian's `tor` package), no outside address anywhere. arti clients join
//! it through [`TestNetwork::network`].
//!
//! Start-up takes 15–45 s (the authorities' first votes); the network is
//! ready when every relay is in the consensus. Dropping the value stops the
//! processes; so does the end of the process that started them (tor polls
//! for its owner), so a network kept in a static for a whole test binary
//! does not outlive it.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{Fallback, PrivateNetwork};
use crate::error::{Error, Result};

/// Relays use tor's Vanilla scheduler: KIST, the default, sends on a
/// 10 ms tick, so round trips on loopback came out 8, 16 or (rarely) 96 ms
/// depending on how a circuit's hops lined up, which drowned what the
/// benchmark compares (reference/private-tor.md: 15-16 ms with KIST,
/// 4.7 ms with Vanilla).
///
/// Seconds between the authorities' votes. 24 × 15 s = 6 min is C tor's
/// onion-service time period on a testing network; arti reads the period
/// from `hsdir_interval`, so both are set to agree.
///
/// The consensus also turns off learned circuit-build timeouts
/// (`cbtdisabled=1`: a fixed 60 s instead). Clients learn a timeout from
/// the build times they see, and on loopback those are milliseconds; on a
/// busy core a build then outlasts the learned timeout, the attempt is
/// abandoned while its first hop is still connecting, and the guard is
/// blamed. Once every guard of the seven was marked down, a daemon's onion
/// service stayed "publishing" for minutes ("Requested 54 relays, but only
/// 0 were usable … role=Guard").
const VOTE_SECS: u32 = 15;
const AUTHORITIES: usize = 3;
const RELAYS: usize = 4;

/// Whether this machine can run the test network (`tor` and `tor-gencert`).
pub fn available() -> std::result::Result<(), String> {
    for tool in ["tor", "tor-gencert"] {
        let found = Command::new(tool).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if found.is_err() {
            return Err(format!("`{tool}` is not installed (apt-get install tor)"));
        }
    }
    Ok(())
}

/// One `tor` process of the network, an authority or a relay: its name,
/// data directory and ports.
#[derive(Debug)]
struct TorProcess {
    name: String,
    dir: PathBuf,
    or_port: u16,
    dir_port: u16,
    authority: bool,
}

/// The private network's `tor` processes (three authorities, four relays); dropping it kills them.
#[derive(Debug)]
pub struct TestNetwork {
    dir: PathBuf,
    processes: Vec<TorProcess>,
    /// The running `tor` of each of `processes`, in the same order.
    children: Vec<Child>,
    network: PrivateNetwork,
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn fail(what: impl std::fmt::Display) -> Error {
    Error::Config(format!("test network: {what}"))
}

/// Picks the network's ports from below the kernel's ephemeral range.
///
/// A port the kernel hands to `bind(0)` is free when asked but may be taken
/// before tor binds it: every outgoing connection on the machine draws its
/// local port from that same range (a previous run's tor processes, still
/// shutting down, make plenty), and a tor that cannot bind its ORPort exits.
/// Below the range only explicit binds compete; a port is still tried
/// before it is handed out, and never handed out twice.
struct Ports {
    next: u16,
    low: u16,
    high: u16,
    given: Vec<u16>,
}

impl Ports {
    fn new() -> Self {
        let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
            .unwrap_or(32768);
        let high = ephemeral_low.max(12000);
        let low = high - 10000;
        // Start somewhere else each run, so a network that is still
        // shutting down keeps its ports to itself.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let offset = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % u32::from(high - low);
        Self { next: low + offset as u16, low, high, given: Vec::new() }
    }

    fn take(&mut self) -> Result<u16> {
        for _ in self.low..self.high {
            let port = self.next;
            self.next = if port + 1 >= self.high { self.low } else { port + 1 };
            if !self.given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                self.given.push(port);
                return Ok(port);
            }
        }
        Err(fail("no free port below the ephemeral range"))
    }
}

fn run(command: &mut Command) -> Result<String> {
    let out = command.stderr(Stdio::piped()).stdout(Stdio::piped()).output().map_err(fail)?;
    if !out.status.success() {
        return Err(fail(format!("{command:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| fail(format!("{}: {e}", path.display())))
}

fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(path).map_err(fail)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(fail)
}

impl TestNetwork {
    /// Generates keys and configurations under `dir` and starts the network;
    /// returns once the processes run (see [`TestNetwork::wait_ready`]).
    pub fn start(dir: &Path) -> Result<Self> {
        available().map_err(fail)?;
        private_dir(dir)?;
        let mut processes = Vec::new();
        let mut ports = Ports::new();
        for i in 0..AUTHORITIES + RELAYS {
            let name = if i < AUTHORITIES { format!("a{}", i + 1) } else { format!("r{}", i - AUTHORITIES + 1) };
            let data_dir = dir.join(&name);
            private_dir(&data_dir)?;
            processes.push(TorProcess {
                name,
                dir: data_dir,
                or_port: ports.take()?,
                dir_port: ports.take()?,
                authority: i < AUTHORITIES,
            });
        }
        let resolv = dir.join("resolv.conf");
        fs::write(&resolv, "nameserver 127.0.0.1\n").map_err(fail)?;

        let mut authority_lines = String::new();
        let mut authorities = Vec::new();
        for tor in &processes {
            if tor.authority {
                let keys = tor.dir.join("keys");
                private_dir(&keys)?;
                let mut gencert = Command::new("tor-gencert");
                gencert
                    .current_dir(&keys)
                    .args(["--create-identity-key", "--passphrase-fd", "0", "-m", "12", "-a"])
                    .arg(format!("127.0.0.1:{}", tor.dir_port))
                    .args([
                        "-i",
                        "authority_identity_key",
                        "-s",
                        "authority_signing_key",
                        "-c",
                        "authority_certificate",
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let mut child = gencert.spawn().map_err(fail)?;
                if let Some(mut stdin) = child.stdin.take() {
                    use std::io::Write;
                    let _ = stdin.write_all(b"\n");
                }
                let status = child.wait().map_err(fail)?;
                if !status.success() {
                    return Err(fail("tor-gencert failed"));
                }
            }
            run(Command::new("tor")
                .args(["--quiet", "--ignore-missing-torrc", "-f", "/dev/null", "--DataDirectory"])
                .arg(&tor.dir)
                .arg("--list-fingerprint")
                .arg("--ORPort")
                .arg(format!("127.0.0.1:{}", tor.or_port))
                .args(["--DirAuthority", "x 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff"]))?;
            if tor.authority {
                let cert = read(&tor.dir.join("keys/authority_certificate"))?;
                let v3 = cert
                    .lines()
                    .find_map(|l| l.strip_prefix("fingerprint "))
                    .ok_or_else(|| fail("no fingerprint in the authority certificate"))?
                    .trim()
                    .to_owned();
                let fp = fingerprint(&tor.dir)?;
                let _ = writeln!(
                    authority_lines,
                    "DirAuthority {} orport={} no-v2 v3ident={v3} 127.0.0.1:{} {fp}",
                    tor.name, tor.or_port, tor.dir_port
                );
                authorities.push(v3);
            }
        }
        let dirauths = dir.join("dirauths.conf");
        fs::write(&dirauths, &authority_lines).map_err(fail)?;

        let mut fallbacks = Vec::new();
        for tor in &processes {
            fs::write(tor.dir.join("torrc"), torrc(tor, &dirauths, &resolv)).map_err(fail)?;
            let ed = read(&tor.dir.join("fingerprint-ed25519"))?;
            let ed = ed.split_whitespace().nth(1).ok_or_else(|| fail("no ed25519 fingerprint"))?.to_owned();
            let orport = SocketAddr::from(([127, 0, 0, 1], tor.or_port));
            fallbacks.push(Fallback { rsa_identity: fingerprint(&tor.dir)?, ed_identity: ed, orport });
        }

        let mut network = Self {
            dir: dir.to_owned(),
            processes,
            children: Vec::new(),
            network: PrivateNetwork { authorities, fallbacks, loopback: true },
        };
        for tor in &network.processes {
            let child = Command::new("tor")
                .arg("-f")
                .arg(tor.dir.join("torrc"))
                .env("MALLOC_ARENA_MAX", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(fail)?;
            network.children.push(child);
        }
        Ok(network)
    }

    /// The OR ports of every authority and relay: the only ports a node
    /// using this network connects to.
    pub fn or_ports(&self) -> Vec<u16> {
        self.processes.iter().map(|n| n.or_port).collect()
    }

    /// What an arti client needs to join this network.
    pub fn network(&self) -> PrivateNetwork {
        self.network.clone()
    }

    /// Waits until every relay is listed in the authorities' consensus and
    /// bootstrapped, at most `limit`.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            for child in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(fail(format!("a tor process exited ({status}); logs in {}", self.dir.display())));
                }
            }
            if self.ready() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                return Err(fail(format!("not ready after {limit:?}; logs in {}", self.dir.display())));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn ready(&self) -> bool {
        let relays_bootstrapped =
            self.processes.iter().filter(|n| !n.authority).all(|n| {
                fs::read_to_string(n.dir.join("notice.log")).is_ok_and(|log| log.contains("Bootstrapped 100%"))
            });
        let listed = self.processes.iter().filter(|n| n.authority).any(|n| {
            fs::read_to_string(n.dir.join("cached-microdesc-consensus"))
                .is_ok_and(|c| c.lines().filter(|l| l.starts_with("r ")).count() >= AUTHORITIES + RELAYS)
        });
        relays_bootstrapped && listed
    }
}

fn fingerprint(dir: &Path) -> Result<String> {
    let text = read(&dir.join("fingerprint"))?;
    text.split_whitespace().nth(1).map(str::to_owned).ok_or_else(|| fail("no relay fingerprint"))
}

/// Vanguards-lite is off: a relay that drew its second-hop set from an early
/// consensus that listed only some of the seven tor processes kept failing every
/// internal circuit ("Could not find a node that matches the configured
/// _HSLayer2Nodes set", "Failed to find node for hop #2") for minutes,
/// never reaching "Bootstrapped 100%" (seen once under load).
fn torrc(tor: &TorProcess, dirauths: &Path, resolv: &Path) -> String {
    let d = tor.dir.display();
    let mut c = format!(
        "TestingTorNetwork 1\nDataDirectory {d}\nNickname {name}\nLog notice file {d}/notice.log\n\
         SafeLogging 0\nShutdownWaitLength 0\nUseDefaultFallbackDirs 0\n%include {auths}\n\
         ClientUseIPv6 0\nAddressDisableIPv6 1\nPathsNeededToBuildCircuits 0.67\nV3AuthNIntervalsValid 2\n\
         TestingDirAuthVoteGuard *\nTestingDirAuthVoteExit *\nTestingDirAuthVoteHSDir *\n\
         TestingMinExitFlagThreshold 0\nServerDNSDetectHijacking 0\nServerDNSTestAddresses 127.0.0.1\n\
         ServerDNSResolvConfFile {resolv}\nServerDNSAllowBrokenConfig 1\nGeoIPFile \"\"\nGeoIPv6File \"\"\n\
         NumCPUs 1\nSchedulers Vanilla\nAddress 127.0.0.1\nORPort 127.0.0.1:{or} IPv4Only\nDirPort 127.0.0.1:{dir}\nSocksPort 0\n\
         ContactInfo {name}@test.invalid\nAssumeReachable 1\nExitRelay 0\nExitPolicy reject *:*\n\
         VanguardsLiteEnabled 0\n__OwningControllerProcess {owner}\n",
        name = tor.name,
        auths = dirauths.display(),
        resolv = resolv.display(),
        or = tor.or_port,
        dir = tor.dir_port,
        // Tor exits on its own once the process that started the network is
        // gone, even if the value was never dropped (a static in a test binary).
        owner = std::process::id(),
    );
    if tor.authority {
        let period_minutes = VOTE_SECS * 24 / 60;
        let _ = write!(
            c,
            "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nV3AuthVotingInterval {VOTE_SECS}\n\
             V3AuthVoteDelay 2\nV3AuthDistDelay 2\nTestingV3AuthInitialVotingInterval {VOTE_SECS}\n\
             TestingV3AuthInitialVoteDelay 2\nTestingV3AuthInitialDistDelay 2\nAuthDirHasIPv6Connectivity 0\n\
             ConsensusParams hsdir_interval={period_minutes} cbtdisabled=1\n"
        );
    }
    c
}
