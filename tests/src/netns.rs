//! Network namespaces on a bridge of the host, to cut the network between processes: each
//! namespace has a veth pair whose host end is a port of the bridge, all in one /24 with the
//! bridge (the host) at `.1`, so the namespaces reach the host and each other at layer 2 (no
//! forwarding on the host). A cut drops, at input, what one namespace receives from the other:
//! packets leave and vanish as on a broken link, silently. Needs root and the `ip` command.
//!
//! Names carry the test process's id (`kappa-{pid}-{i}`, bridge `kpb{pid}`), and what an
//! earlier process of the same id left behind is deleted first. Everything is deleted when the
//! [`Network`] is dropped: drop the processes running inside first (a namespace lives on while
//! a process is in it).

use std::process::Command;

use anyhow::{Context, bail};

/// Runs `ip args…`; the error carries its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running the ip command (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ip args…` of a cleanup, whose failure (nothing to delete) is expected.
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).output();
}

/// One network namespace of a [`Network`].
#[derive(Debug, Clone)]
pub struct Namespace {
    /// Its name for `ip netns exec`.
    pub name: String,
    /// Its address on the bridge.
    pub ip: String,
    /// The host's address on the bridge, reachable from every namespace.
    pub host_ip: String,
    /// The host end of its veth pair, a port of the bridge.
    host_end: String,
}

/// Namespaces on one bridge of the host; removed when dropped.
pub struct Network {
    bridge: String,
    /// The host's address on the bridge: listen on it (or 0.0.0.0) to serve the namespaces.
    pub host_ip: String,
    pub namespaces: Vec<Namespace>,
}

/// A /24 under 10.201/16 that no interface of the host is on, starting from one the process id
/// picks (so parallel test processes, and leftovers of crashed ones, do not share a subnet).
fn free_subnet() -> anyhow::Result<String> {
    let first = std::process::id() % 250;
    for n in (0..250).map(|k| (first + k) % 250 + 1) {
        let subnet = format!("10.201.{n}");
        let out = Command::new("ip")
            .args(["-o", "-4", "addr", "show", "to", &format!("{subnet}.0/24")])
            .output()
            .context("running the ip command (iproute2)")?;
        if out.status.success() && out.stdout.is_empty() {
            return Ok(subnet);
        }
    }
    bail!("no free /24 under 10.201.0.0/16 on this host")
}

impl Network {
    /// A bridge and `count` namespaces on it, each with `lo` up.
    pub fn create(count: usize) -> anyhow::Result<Self> {
        let pid = std::process::id();
        let bridge = format!("kpb{pid}");
        let names: Vec<String> = (0..count).map(|i| format!("kappa-{pid}-{i}")).collect();
        let host_end = |i: usize| format!("kpv{pid}-{i}");
        // Leftovers of an earlier process with this id.
        for (i, name) in names.iter().enumerate() {
            ip_quiet(&["netns", "del", name]);
            ip_quiet(&["link", "del", &host_end(i)]);
        }
        ip_quiet(&["link", "del", &bridge]);
        let subnet = free_subnet()?;
        let host_ip = format!("{subnet}.1");
        // From here on, Drop removes whatever was made.
        let mut net = Self {
            bridge: bridge.clone(),
            host_ip: host_ip.clone(),
            namespaces: Vec::new(),
        };
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for (i, name) in names.into_iter().enumerate() {
            let ns_ip = format!("{subnet}.{}", i + 2);
            let end = host_end(i);
            ip(&["netns", "add", &name])?;
            net.namespaces.push(Namespace {
                name: name.clone(),
                ip: ns_ip.clone(),
                host_ip: host_ip.clone(),
                host_end: end.clone(),
            });
            ip(&[
                "link", "add", &end, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ])?;
            ip(&["link", "set", &end, "master", &bridge, "up"])?;
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_ip}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            // The local table is looked up first (rule 0), before any rule a cut adds: move it
            // behind them, so a cut also drops what is addressed to this namespace.
            ip(&["-n", &name, "rule", "add", "pref", "100", "lookup", "local"])?;
            ip(&["-n", &name, "rule", "del", "pref", "0"])?;
        }
        Ok(net)
    }

    /// Cuts the link between namespaces `a` and `b` (indices): each drops, silently, every
    /// packet from the other. Both keep reaching the host.
    pub fn cut(&self, a: usize, b: usize) -> anyhow::Result<()> {
        self.rules("add", a, b)
    }

    /// Undoes [`Network::cut`].
    pub fn heal(&self, a: usize, b: usize) -> anyhow::Result<()> {
        self.rules("del", a, b)
    }

    fn rules(&self, verb: &str, a: usize, b: usize) -> anyhow::Result<()> {
        let (na, nb) = (&self.namespaces[a], &self.namespaces[b]);
        for (at, from) in [(na, nb), (nb, na)] {
            ip(&[
                "-n",
                &at.name,
                "rule",
                verb,
                "pref",
                "10",
                "from",
                &format!("{}/32", from.ip),
                "blackhole",
            ])?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting the host end deletes the pair, even while a process keeps the namespace.
        for ns in &self.namespaces {
            ip_quiet(&["link", "del", &ns.host_end]);
            ip_quiet(&["netns", "del", &ns.name]);
        }
        ip_quiet(&["link", "del", &self.bridge]);
    }
}
