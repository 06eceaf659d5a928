//! Network namespaces a test builds for itself: hosts and links of its own,
//! so nothing it sends reaches the machine's real interfaces. Needs root
//! and `ip` (and whatever else a test names); without them a test skips
//! with the reason, or fails when `VEIL_FULL_TESTS=1` (CI).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Why a namespace test needing `tools` cannot run here, if it cannot.
fn missing_prerequisite(tools: &[&str]) -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root (network namespaces need it)".into());
    }
    for tool in tools {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// `true` if a namespace test needing `tools` may run; otherwise it skips
/// with the reason, or fails under `VEIL_FULL_TESTS=1`.
pub fn may_run(tools: &[&str]) -> bool {
    let Some(reason) = missing_prerequisite(tools) else { return true };
    assert!(std::env::var("VEIL_FULL_TESTS").as_deref() != Ok("1"), "VEIL_FULL_TESTS=1 but {reason}");
    eprintln!("skipping the network-namespace test: {reason}");
    false
}

/// Runs a command and requires it to succeed.
pub fn must(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The namespaces of one test, named uniquely per process and test;
/// deleted (with their links) on drop, whether the test passed or not.
#[derive(Debug)]
pub struct Namespaces {
    prefix: String,
    names: Vec<&'static str>,
}

impl Namespaces {
    /// Creates `names`, each with its loopback up.
    pub fn create(names: &[&'static str]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!("veil{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut namespaces = Self { prefix, names: Vec::new() };
        for ns in names {
            must("ip", &["netns", "add", &namespaces.ns(ns)]);
            namespaces.names.push(ns);
            namespaces.ip(ns, &["link", "set", "lo", "up"]);
        }
        namespaces
    }

    /// The system name of namespace `name`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// `ip ARGS` inside namespace `ns`.
    pub fn ip(&self, ns: &str, args: &[&str]) {
        let ns = self.ns(ns);
        must("ip", &[&["-n", ns.as_str()][..], args].concat());
    }

    /// A veth pair between two namespaces, addressed and up.
    pub fn wire(&self, (ns1, if1, addr1): (&str, &str, &str), (ns2, if2, addr2): (&str, &str, &str)) {
        let (n1, n2) = (self.ns(ns1), self.ns(ns2));
        must("ip", &["link", "add", if1, "netns", &n1, "type", "veth", "peer", "name", if2, "netns", &n2]);
        self.ip(ns1, &["addr", "add", addr1, "dev", if1]);
        self.ip(ns2, &["addr", "add", addr2, "dev", if2]);
        self.ip(ns1, &["link", "set", if1, "up"]);
        self.ip(ns2, &["link", "set", if2, "up"]);
    }

    /// A LAN: a bridge in namespace `switch` with a port for each of
    /// `hosts` (namespace, address), whose `eth0` is up with multicast
    /// routed onto it (mDNS) and no other route.
    pub fn lan(&self, switch: &str, hosts: &[(&str, &str)]) {
        let sw = self.ns(switch);
        self.ip(switch, &["link", "add", "br0", "type", "bridge"]);
        self.ip(switch, &["link", "set", "br0", "up"]);
        for (i, (host, addr)) in hosts.iter().enumerate() {
            let port = format!("port{i}");
            must(
                "ip",
                &["link", "add", &port, "netns", &sw, "type", "veth", "peer", "name", "eth0", "netns", &self.ns(host)],
            );
            self.ip(switch, &["link", "set", &port, "master", "br0"]);
            self.ip(switch, &["link", "set", &port, "up"]);
            self.ip(host, &["addr", "add", addr, "dev", "eth0"]);
            self.ip(host, &["link", "set", "eth0", "multicast", "on"]);
            self.ip(host, &["link", "set", "eth0", "up"]);
            self.ip(host, &["route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
    }

    /// Lets namespace `ns` forward IPv4 packets between its links.
    pub fn forward(&self, ns: &str) {
        must("ip", &["netns", "exec", &self.ns(ns), "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    }

    /// A command run inside namespace `ns`.
    pub fn exec(&self, ns: &str, program: &str) -> Command {
        let mut cmd = clean(Command::new("ip"));
        cmd.args(["netns", "exec", &self.ns(ns), program]);
        cmd
    }
}

/// Starts tcpdump with `args` on `eth0` of namespace `ns`; returns once it
/// captures (it says so on standard error).
pub fn tcpdump(namespaces: &Namespaces, ns: &str, args: &[&str], stdout: Stdio) -> Child {
    let mut child = namespaces
        .exec(ns, "tcpdump")
        // Immediate mode: each packet reaches tcpdump as it comes, not in
        // blocks that a short test may stop before they are handed over.
        .args(["-i", "eth0", "-n", "--immediate-mode"])
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("listening on") {
        line.clear();
    }
    assert!(line.contains("listening on"), "tcpdump did not start: {line}");
    // Kept open and drained: tcpdump writing to a closed pipe stops capturing.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            // Deleting a namespace removes its veths (and their peers).
            let _ = Command::new("ip").args(["netns", "del", &self.ns(ns)]).status();
        }
    }
}
