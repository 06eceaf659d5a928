//! The command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// veil: a metadata-minimising peer-to-peer messenger.
///
/// Start a node with `veil daemon`, then drive it with the other commands;
/// `veil chat` opens the terminal UI and `veil demo` shows everything working
/// on loopback without any set-up.
#[derive(Debug, Parser)]
#[command(name = "veil", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    /// The home directory (identity, database, veil.toml, veil.sock).
    /// Default: $XDG_DATA_HOME/veil.
    #[arg(long, global = true, env = "VEIL_HOME", value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
    /// Print one JSON document per result (stable field names) instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the home directory, its veil.toml and a fresh identity
    /// (offline), or with `--link` join an account as its new device.
    Init {
        /// How to introduce yourself in contact requests (written to veil.toml).
        #[arg(long)]
        name: Option<String>,
        /// A device offer (`veil device link` on a device of the account):
        /// this home becomes a new device of that account (as `veil device join`).
        #[arg(long, value_name = "OFFER")]
        link: Option<String>,
    },
    /// Link devices of this account: offer it to a new device, join an
    /// account from a new one, list the account's devices.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Write a backup of everything (account, contacts, groups, history)
    /// to FILE, sealed under a passphrase: VEIL_BACKUP_PASSPHRASE, else a
    /// line read from standard input.
    Backup { file: std::path::PathBuf },
    /// Restore a backup into this home (offline: no daemon may run, and the
    /// home must hold no node yet). The restored node is a new device of the
    /// same account. Passphrase as for `backup`.
    Restore { file: std::path::PathBuf },
    /// Show this node's identity (account key).
    Id,
    /// Show, draw, enable, disable or reset your contact link.
    Link {
        #[command(subcommand)]
        action: Option<LinkAction>,
    },
    /// Contact requests and contacts.
    Contact {
        #[command(subcommand)]
        action: Option<ContactAction>,
    },
    /// List conversations (1:1 with contacts, and groups).
    #[command(visible_alias = "ls")]
    Conversations,
    /// Send a message.
    Send {
        /// Conversation id (or a unique prefix of at least 6 digits) or a contact's name.
        conversation: String,
        /// The message ("-" reads it from standard input).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Mark a conversation's messages read (all of them).
    Read {
        /// Conversation id (or a unique prefix of at least 6 digits) or a contact's name.
        conversation: String,
    },
    /// Erase this device's copy of a conversation's messages (the other
    /// side keeps theirs).
    Forget {
        /// Conversation id (or a unique prefix of at least 6 digits) or a contact's name.
        conversation: String,
    },
    /// Keep a conversation's messages on this device for a time only:
    /// older ones are erased now and from then on.
    Retention {
        /// Conversation id (or a unique prefix of at least 6 digits) or a contact's name.
        conversation: String,
        /// How long: `90s`, `30m`, `12h`, `7d`, or `forever`.
        #[arg(value_parser = parse_keep)]
        keep: u64,
    },
    /// Show a conversation's messages.
    Log {
        /// Conversation id (or a unique prefix of at least 6 digits) or a contact's name.
        conversation: String,
        /// Keep printing new messages as they arrive.
        #[arg(long, short)]
        follow: bool,
        /// How many of the latest messages to show first (1 to 1000).
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
    },
    /// Groups.
    Group {
        #[command(subcommand)]
        action: GroupAction,
    },
    /// Show the node's status: peer id, addresses, policy, transports, peers, rendezvous period.
    Status,
    /// Show or set the privacy policy.
    Policy {
        /// direct | relayed | anonymous | offline (none: show the current one).
        policy: Option<String>,
    },
    /// List, attach or detach transports.
    Transport {
        #[command(subcommand)]
        action: Option<TransportAction>,
    },
    /// List every address the node learned for each peer, and where from.
    Peers,
    /// Show what each observer (contact, relay, rendezvous server, DHT peer,
    /// LAN neighbour, eavesdropper…) learns under the current policy.
    Audit,
    /// Run the node and serve the daemon API on <home>/veil.sock.
    Daemon(DaemonArgs),
    /// Print the daemon's live events (one line, or one JSON document, each).
    Events,
    /// Open the terminal chat UI.
    Chat,
    /// Start a few nodes on loopback in this process and chat with them.
    Demo {
        /// Do not open the UI: run a scripted conversation, print it and exit.
        #[arg(long)]
        script: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceAction {
    /// Show a one-time offer (link and QR code) for a new device, then ask
    /// for the code the new device shows. Stop it to withdraw the offer.
    Link {
        /// How long the offer is answered: `90s`, `10m` (the default), at most `1h`.
        #[arg(long, value_parser = parse_span)]
        lifetime: Option<u64>,
    },
    /// Make this home a new device of the account whose offer OFFER is
    /// (offline: the home must hold no node yet). Shows a code to compare
    /// with the other device's, then asks for it.
    Join {
        /// The offer (`veil://device/…` or the QR code's text).
        offer: String,
    },
    /// List this account's devices known here.
    List,
    /// Remove another device of this account (by its key, or the start of
    /// it): every conversation moves to keys it does not get, so it reads
    /// nothing written afterwards. It keeps the account's keys until they
    /// are rotated (docs/THREATS.md).
    Remove {
        /// The device's key in hex, or a prefix naming one device (`veil device list`).
        device: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LinkAction {
    /// Print the link (the default).
    Show,
    /// Draw the link as a QR code in the terminal.
    Qr,
    /// Answer requests sent to the link.
    Enable,
    /// Stop answering requests sent to the link (it is no longer announced).
    Disable,
    /// Make a new link; every earlier link stops working.
    Reset {
        /// The new link stops answering after this long: `90s`, `30m`, `1h`, `7d` (default: never).
        #[arg(long, value_parser = parse_span)]
        expires: Option<u64>,
        /// And after this many requests (`--uses 1`: a one-time link; default: no limit).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        uses: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ContactAction {
    /// Send a contact request to the owner of a link.
    Add {
        /// Their veil://contact/… link (or its QR text).
        link: String,
        /// How to introduce yourself (default: `name` in veil.toml).
        #[arg(long)]
        name: Option<String>,
    },
    /// List contacts and requests (the default).
    List,
    /// Accept a contact request (by name, or account key or a prefix of it).
    Accept { contact: String },
    /// Discard a contact request silently.
    Discard { contact: String },
    /// Refuse a contact's requests from now on.
    Block { contact: String },
    /// Call a contact something of your own choosing (kept on this device,
    /// never sent; every command then knows them by it). Without a new
    /// name, the nickname is cleared and their own name shows again.
    Rename {
        /// The contact (by name, or account key or a prefix of it).
        contact: String,
        /// What to call them.
        nickname: Option<String>,
    },
    /// Remove a contact for good: your conversation with them stops and its
    /// keys and messages are erased from this device.
    Remove {
        /// The contact (by name, or account key or a prefix of it).
        contact: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupAction {
    /// Create a group.
    Create {
        /// Its name.
        name: Option<String>,
    },
    /// Make an invitation to a group.
    Invite {
        conversation: String,
        /// Refuse the invitation after this long: `90s`, `30m`, `1h`, `7d` (default: never).
        #[arg(long, value_parser = parse_span)]
        expires: Option<u64>,
    },
    /// Join a group through an invitation.
    Join { invitation: String },
    /// Leave a group: the others move to keys you do not get.
    Leave { conversation: String },
    /// Remove a member (its key as `group members` prints it): it cannot
    /// read anything written afterwards.
    Remove { conversation: String, member: String },
    /// List a group's members.
    Members { conversation: String },
    /// Print the credential a blind replication node needs for a group
    /// (it can store and serve the group's entries, not read them).
    Credential { conversation: String },
    /// Serve as a blind replication node for the group a credential names.
    Replicate { credential: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TransportAction {
    /// List attached and available transports (the default).
    List,
    /// Attach a transport (tcp, quic, tor, ble).
    Attach { name: String },
    /// Detach a transport; its connections close.
    Detach { name: String },
}

#[derive(Debug, Args)]
pub(crate) struct DaemonArgs {
    /// Listen on this address (repeatable; replaces `listen` in veil.toml).
    #[arg(long = "listen", value_name = "MULTIADDR", env = "VEIL_LISTEN", value_delimiter = ',')]
    pub(crate) listen: Vec<String>,
    /// Use this rendezvous server, ending in /p2p/<peer id> (repeatable).
    #[arg(long = "rendezvous", value_name = "MULTIADDR", env = "VEIL_RENDEZVOUS", value_delimiter = ',')]
    pub(crate) rendezvous: Vec<String>,
    /// Use this relay under the relayed policy, ending in /p2p/<peer id>
    /// (repeatable; one is drawn at random each period).
    #[arg(long = "relay", value_name = "MULTIADDR", env = "VEIL_RELAYS", value_delimiter = ',')]
    pub(crate) relays: Vec<String>,
    /// Join the Kademlia DHT through this peer, ending in /p2p/<peer id> (repeatable).
    #[arg(long = "bootstrap", value_name = "MULTIADDR", env = "VEIL_BOOTSTRAP", value_delimiter = ',')]
    pub(crate) bootstrap: Vec<String>,
    /// The privacy policy: direct | relayed | anonymous | offline.
    #[arg(long, env = "VEIL_POLICY")]
    pub(crate) policy: Option<String>,
    /// Roles to serve for others: rendezvous, relay, dht (comma-separated).
    #[arg(long, value_name = "ROLES", env = "VEIL_SERVE", value_delimiter = ',')]
    pub(crate) serve: Vec<String>,
    /// How to introduce yourself in contact requests.
    #[arg(long, env = "VEIL_NAME")]
    pub(crate) name: Option<String>,
    /// Do not look for peers on the LAN (mDNS).
    #[arg(long, env = "VEIL_NO_MDNS")]
    pub(crate) no_mdns: bool,
    #[command(subcommand)]
    pub(crate) action: Option<DaemonAction>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DaemonAction {
    /// Ask the running daemon to stop.
    Stop,
}

impl DaemonArgs {
    /// The settings these flags (and their environment variables) override.
    pub(crate) fn overrides(&self) -> Overrides {
        let list = |v: &Vec<String>| Some(v.clone()).filter(|v| !v.is_empty());
        Overrides {
            name: self.name.clone(),
            listen: list(&self.listen),
            rendezvous_servers: list(&self.rendezvous),
            relays: list(&self.relays),
            bootstrap: list(&self.bootstrap),
            policy: self.policy.clone(),
            serve: list(&self.serve),
            mdns: self.no_mdns.then_some(false),
        }
    }
}

/// A span of time as `<number><s|m|h|d>`, in seconds (at least one).
/// A retention period in seconds (`forever`: 0).
fn parse_keep(text: &str) -> Result<u64, String> {
    match text.trim() {
        "forever" | "for-ever" | "off" => Ok(0),
        span => parse_span(span),
    }
}

fn parse_span(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let unit_at = text.char_indices().last().map_or(0, |(at, _)| at);
    let (number, unit) = text.split_at(unit_at);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("give a number and a unit: s, m, h or d (e.g. 1h)".to_owned()),
    };
    let n: u64 = number.parse().map_err(|_| format!("{number:?} is not a whole number"))?;
    match n.checked_mul(scale) {
        Some(0) => Err("at least one second".to_owned()),
        Some(seconds) => Ok(seconds),
        None => Err("too long".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn spans_read_as_seconds_and_nonsense_is_refused() {
        assert_eq!(parse_span("90s"), Ok(90));
        assert_eq!(parse_span("30m"), Ok(1800));
        assert_eq!(parse_span(" 1h "), Ok(3600));
        assert_eq!(parse_span("7d"), Ok(604_800));
        for bad in ["", "h", "1", "1w", "-1h", "0s", "1.5h", "99999999999999999999d", "1é", "é"] {
            assert!(parse_span(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_parse_anywhere_and_override() {
        let cli = Cli::try_parse_from([
            "veil",
            "daemon",
            "--home",
            "/tmp/x",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--serve",
            "rendezvous,relay",
            "--no-mdns",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.home.as_deref(), Some(std::path::Path::new("/tmp/x")));
        let Command::Daemon(args) = cli.command else { panic!("not the daemon") };
        let over = args.overrides();
        assert_eq!(over.listen.unwrap().len(), 2);
        assert_eq!(over.serve.unwrap(), vec!["rendezvous", "relay"]);
        assert_eq!(over.mdns, Some(false));
        assert_eq!(over.policy, None);
    }
}
