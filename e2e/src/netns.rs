//! A private IPv4 network for one test, built from Linux network namespaces (needs root and
//! iproute2; [`Network::block`] also needs iptables).
//!
//! ```text
//!   root namespace (the test process, 10.X.Y.1)
//!        │
//!   bridge wtb<pid>x<n> ── veth wtv<pid>x<n>h0 ══ eth0 10.X.Y.10  netns weir-e2e-<pid>-<n>-0
//!                       ── veth wtv<pid>x<n>h1 ══ eth0 10.X.Y.11  netns weir-e2e-<pid>-<n>-1
//!                       ── ...
//! ```
//!
//! Every host is a namespace of its own with `lo` and one veth into the bridge, so a process
//! started there with [`Network::command`] binds its host's address, and the test process in
//! the root namespace reaches every host through the bridge. [`Network::cut`] takes a host's
//! bridge port down: nothing gets in or out, established connections included, and the
//! processes there see exactly what a pulled cable looks like. [`Network::block`] drops
//! traffic between one host and some others only (iptables in that host's namespace), so a
//! host can be partitioned from its peers while the test still talks to it.
//!
//! Names carry the creating process' pid (in base 36 for the 15-byte interface names), so a
//! later run removes what a killed run left behind ([`remove_stale`]) without touching the
//! networks of test processes still running. Dropping a [`Network`] kills every process left
//! in its namespaces and deletes them and the bridge, also when the test panicked.

use anyhow::{Context, bail};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of namespace names: `weir-e2e-<pid>-<n>-<host>`.
const NS_PREFIX: &str = "weir-e2e-";
/// Prefix of bridge names: `wtb<pid base 36>x<n base 36>`.
const BRIDGE_PREFIX: &str = "wtb";
/// Prefix of the root-side veth names: `wtv<pid base 36>x<n base 36>h<host>`.
const VETH_PREFIX: &str = "wtv";
/// Linux interface names are at most 15 bytes.
const IFNAME_BYTES_MAX: usize = 15;
/// Host i gets 10.X.Y.(HOST_OCTET_FIRST + i).
const HOST_OCTET_FIRST: usize = 10;
const HOSTS_MAX: usize = 64;
const _: () = assert!(HOST_OCTET_FIRST + HOSTS_MAX < 255);

/// Networks made by this process so far; part of every name.
static NETWORKS: AtomicU32 = AtomicU32::new(0);

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn parse_base36(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 36).ok()
}

/// Runs a command to completion; fails with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip").args(args))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends `signal` (a name such as `KILL`, `STOP`, `CONT`) to one process.
pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    run(Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string()))
    .map(|_| ())
}

/// Kills every process in namespace `ns` (they are all ours: nobody else uses our names).
fn kill_all_in(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let _ = signal(pid, "KILL");
        }
    }
}

/// The pid a name of ours was made by, if `name` is one of ours.
fn owner_of_ns(name: &str) -> Option<u32> {
    name.strip_prefix(NS_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn owner_of_link(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(BRIDGE_PREFIX)
        .or_else(|| name.strip_prefix(VETH_PREFIX))?;
    parse_base36(rest.split('x').next()?)
}

/// Namespace names, without the `(id: N)` suffix `ip netns list` may print.
fn namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Interface names in the root namespace.
fn links() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            // "7: wtb1a2x0: <BROADCAST,..." or "8: wtv1a2x0h0@if2: <...".
            let name = l.split(": ").nth(1)?;
            Some(name.split('@').next()?.to_owned())
        })
        .collect()
}

/// Removes the namespaces, bridges and veths that test processes no longer running left
/// behind (a test killed by a timeout or SIGKILL never runs its destructors), with every
/// process still inside those namespaces.
pub fn remove_stale() {
    for ns in namespaces() {
        if owner_of_ns(&ns).is_some_and(|pid| !pid_alive(pid)) {
            kill_all_in(&ns);
            let _ = ip(&["netns", "del", &ns]);
        }
    }
    for link in links() {
        if owner_of_link(&link).is_some_and(|pid| !pid_alive(pid)) {
            let _ = ip(&["link", "del", &link]);
        }
    }
}

/// One host of a [`Network`].
#[derive(Debug, Clone)]
pub struct Host {
    /// The network namespace's name.
    pub ns: String,
    /// The root-namespace end of the host's veth, a port of the bridge.
    pub veth: String,
    pub ip: Ipv4Addr,
}

/// A bridge and a namespace per host; see the module documentation.
#[derive(Debug)]
pub struct Network {
    bridge: String,
    subnet: [u8; 2],
    hosts: Vec<Host>,
}

impl Network {
    /// Creates a network of `hosts` hosts, after removing stale leftovers of earlier runs.
    pub fn new(hosts: usize) -> anyhow::Result<Network> {
        assert!(hosts <= HOSTS_MAX, "at most {HOSTS_MAX} hosts");
        remove_stale();
        let pid = std::process::id();
        let n = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{}", base36(pid), base36(n));
        let bridge = format!("{BRIDGE_PREFIX}{tag}");
        assert!(
            bridge.len() + 1 + 2 <= IFNAME_BYTES_MAX,
            "{bridge} too long"
        );
        let subnet = free_subnet(pid, n)?;
        let mut net = Network {
            bridge: bridge.clone(),
            subnet,
            hosts: Vec::new(),
        };
        // From here on, Drop cleans up whatever was made when a step fails.
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..hosts {
            let host = Host {
                ns: format!("{NS_PREFIX}{pid}-{n}-{i}"),
                veth: format!("{VETH_PREFIX}{tag}h{i}"),
                ip: Ipv4Addr::new(10, subnet[0], subnet[1], (HOST_OCTET_FIRST + i) as u8),
            };
            assert!(
                host.veth.len() <= IFNAME_BYTES_MAX,
                "{} too long",
                host.veth
            );
            ip(&["netns", "add", &host.ns])?;
            net.hosts.push(host.clone());
            ip(&[
                "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns",
                &host.ns,
            ])?;
            ip(&["link", "set", &host.veth, "master", &bridge, "up"])?;
            let in_ns = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &host.ns, "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            in_ns(&["link", "set", "lo", "up"])?;
            in_ns(&["addr", "add", &format!("{}/24", host.ip), "dev", "eth0"])?;
            in_ns(&["link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// The root namespace's address on the bridge: where the test process' packets come from.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], 1)
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn ip(&self, host: usize) -> Ipv4Addr {
        self.hosts[host].ip
    }

    /// A command that runs `program` inside `host`'s namespace. `ip netns exec` execs the
    /// program, so the spawned child's pid is the program's: signals reach it directly.
    pub fn command(&self, host: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[host].ns])
            .arg(program);
        cmd
    }

    /// Cuts `host` off from everything, the test process included: its bridge port goes down.
    pub fn cut(&self, host: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.hosts[host].veth, "down"]).map(|_| ())
    }

    /// Undoes [`Network::cut`].
    pub fn heal(&self, host: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.hosts[host].veth, "up"]).map(|_| ())
    }

    /// Drops all traffic between `host` and each of `others`, both ways, with iptables rules
    /// in `host`'s namespace. Everything else (the test process, hosts not named) still gets
    /// through. Undone by [`Network::unblock`].
    pub fn block(&self, host: usize, others: &[usize]) -> anyhow::Result<()> {
        let ns = &self.hosts[host].ns;
        for &o in others {
            let peer = self.hosts[o].ip.to_string();
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                run(Command::new("ip").args([
                    "netns", "exec", ns, "iptables", "-w", "-A", chain, dir, &peer, "-j", "DROP",
                ]))?;
            }
        }
        Ok(())
    }

    /// Removes every rule [`Network::block`] added in `host`'s namespace.
    pub fn unblock(&self, host: usize) -> anyhow::Result<()> {
        let ns = &self.hosts[host].ns;
        for chain in ["INPUT", "OUTPUT"] {
            run(Command::new("ip").args(["netns", "exec", ns, "iptables", "-w", "-F", chain]))?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            kill_all_in(&host.ns);
            // Deleting the namespace destroys its end of the veth, and with it the bridge port.
            let _ = ip(&["netns", "del", &host.ns]);
            let _ = ip(&["link", "del", &host.veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// 10.X.Y.0/24 for network `n` of process `pid`: derived from both so parallel test processes
/// differ, and checked against the addresses in use so they cannot collide with a live one.
fn free_subnet(pid: u32, n: u32) -> anyhow::Result<[u8; 2]> {
    let used: HashSet<[u8; 2]> = ip(&["-o", "-4", "addr", "show"])?
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.parse::<Ipv4Addr>().ok())
        .filter(|a| a.octets()[0] == 10)
        .map(|a| [a.octets()[1], a.octets()[2]])
        .collect();
    // X in 100..=199 keeps clear of the low 10/8 ranges machines commonly use.
    let start = (pid.wrapping_mul(97).wrapping_add(n.wrapping_mul(7919))) % (100 * 256);
    for k in 0..100 * 256 {
        let i = (start + k) % (100 * 256);
        let subnet = [100 + (i / 256) as u8, (i % 256) as u8];
        if !used.contains(&subnet) {
            return Ok(subnet);
        }
    }
    bail!("no free 10.X.Y.0/24 subnet")
}

/// Whether this process can build networks: root, with `ip` on the path.
pub fn available() -> bool {
    let root = run(Command::new("id").arg("-u")).is_ok_and(|u| u.trim() == "0");
    root && ip(&["netns", "list"]).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Read;
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    #[test]
    fn names_round_trip() {
        for pid in [0, 1, 35, 36, 4_194_304] {
            assert_eq!(parse_base36(&base36(pid)), Some(pid));
        }
        assert_eq!(owner_of_ns("weir-e2e-123-4-5"), Some(123));
        assert_eq!(owner_of_link("wtb3fx0"), parse_base36("3f"));
        assert_eq!(owner_of_link("wtv3fx1h2"), parse_base36("3f"));
        assert_eq!(owner_of_link("eth0"), None);
        // The longest names fit: pid_max is at most 2^22.
        let tag = format!("{}x{}", base36(4_194_304), base36(1295));
        assert!(format!("{VETH_PREFIX}{tag}h{}", HOSTS_MAX - 1).len() <= IFNAME_BYTES_MAX);
    }

    /// What a killed run left behind goes at the next start; a live run's network stays.
    #[test]
    fn stale_leftovers_are_removed() {
        if !available() {
            eprintln!("skipped: network namespaces need root and iproute2");
            return;
        }
        // No process has this pid: pids stay below pid_max, which is at most 2^22.
        let dead = 1u32 << 22;
        let ns = format!("{NS_PREFIX}{dead}-0-0");
        let bridge = format!("{BRIDGE_PREFIX}{}x0", base36(dead));
        ip(&["netns", "add", &ns]).unwrap();
        ip(&["link", "add", &bridge, "type", "bridge"]).unwrap();
        let live = Network::new(1).unwrap();
        assert!(!namespaces().contains(&ns), "stale namespace left");
        assert!(!links().contains(&bridge), "stale bridge left");
        assert!(namespaces().contains(&live.hosts()[0].ns));
        remove_stale();
        assert!(
            namespaces().contains(&live.hosts()[0].ns),
            "removed a live one"
        );
    }

    fn connect(addr: SocketAddr) -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// A listener in one host answers the root namespace and the other host; a cut silences
    /// it for both, a heal brings it back, and a block silences it only for the blocked host.
    #[test]
    fn hosts_reach_each_other_until_cut() {
        if !available() {
            eprintln!("skipped: network namespaces need root and iproute2");
            return;
        }
        let net = Network::new(2).unwrap();
        let server = SocketAddr::from((net.ip(0), 7777));
        // A one-line TCP server: answers every connection with "hello".
        let script = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{}', 7777))\ns.listen()\nwhile True:\n c,_=s.accept()\n c.sendall(b'hello')\n c.close()\n",
            net.ip(0)
        );
        let mut child = net
            .command(0, "python3")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while connect(server).is_err() {
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        // `ip netns exec` execs: the child is python itself.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap();
        assert!(comm.starts_with("python"), "child is {comm}");
        let from_other = || {
            run(net.command(1, "python3").args([
                "-c",
                &format!(
                    "import socket; s=socket.create_connection(('{}', 7777), timeout=0.5); print(s.recv(16).decode())",
                    net.ip(0)
                ),
            ]))
        };
        assert_eq!(connect(server).unwrap(), "hello");
        assert_eq!(from_other().unwrap().trim(), "hello");

        net.cut(0).unwrap();
        assert!(connect(server).is_err(), "root reached a cut host");
        assert!(from_other().is_err(), "a host reached a cut host");
        net.heal(0).unwrap();
        assert_eq!(connect(server).unwrap(), "hello");
        assert_eq!(from_other().unwrap().trim(), "hello");

        net.block(0, &[1]).unwrap();
        assert_eq!(connect(server).unwrap(), "hello", "root is not blocked");
        assert!(from_other().is_err(), "a blocked host got through");
        net.unblock(0).unwrap();
        assert_eq!(from_other().unwrap().trim(), "hello");

        let pid = child.id();
        signal(pid, "STOP").unwrap();
        assert!(connect(server).is_err(), "a stopped server answered");
        signal(pid, "CONT").unwrap();
        assert_eq!(connect(server).unwrap(), "hello");

        let names: Vec<String> = net.hosts().iter().map(|h| h.ns.clone()).collect();
        let bridge = net.bridge.clone();
        drop(net);
        // Dropping the network killed the server and removed everything it made.
        let _ = child.wait();
        assert!(namespaces().iter().all(|n| !names.contains(n)));
        assert!(!links().contains(&bridge));
    }
}
