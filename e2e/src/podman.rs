//! Weir's container images run with podman, for tests of the images themselves: a private
//! network with DNS between containers (netavark and aardvark-dns) and containers on it at
//! fixed addresses, so the test process on the host reaches each one by IP while the
//! containers find each other by name.
//!
//! ```text
//!   test process ── bridge (10.X.Y.1) ─┬─ container 10.X.Y.10  alias coordinator-0
//!   (podman CLI,                       ├─ ...
//!    librdkafka, Admin)                └─ container 10.X.Y.20  alias broker-0
//! ```
//!
//! Containers and the network carry the label `weir-e2e-pid=<pid of the test process>`, so a
//! later run removes what a killed run left behind ([`remove_stale`]) without touching those of
//! test processes still running. Dropping a [`PodmanNetwork`] removes every container on it and
//! then the network, also when the test panicked; when it panicked, the tail of every
//! container's log is printed first.
//!
//! Images: [`images`] names them. Unless `$WEIR_IMAGE_TAG` says which prebuilt tag to use
//! (scripts/test.sh builds them first and sets it), it runs `scripts/build-images.sh`
//! (incremental: a no-op build when nothing changed) and uses the `:dev` tag, so the images
//! tested are the checkout's.

use crate::netns::run;
use crate::workspace_root;
use anyhow::{Context, bail};
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Label on everything a test creates; its value is the test process' pid.
const PID_LABEL: &str = "weir-e2e-pid";
/// Prefix of network names, and of container names (`<network>-<name>`).
const NAME_PREFIX: &str = "weir-e2e-";
/// Attempts at a random /24 before giving up (podman refuses one already in use).
const SUBNET_ATTEMPTS: usize = 20;
/// Lines of each container's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;
/// Where the image repositories live: `localhost/weir/<name>:<tag>`.
pub const REGISTRY: &str = "localhost/weir";

/// Whether podman answers `podman --version`.
pub fn installed() -> bool {
    Command::new("podman")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why a podman test cannot run here, if it cannot: podman is not installed and
/// `$WEIR_REQUIRE_PODMAN` is unset. With the variable set (scripts/test.sh sets it) a missing
/// podman is an error, so CI never skips these tests silently.
pub fn skip_reason() -> anyhow::Result<Option<String>> {
    if installed() {
        return Ok(None);
    }
    if std::env::var_os("WEIR_REQUIRE_PODMAN").is_some() {
        bail!(
            "podman is not installed but WEIR_REQUIRE_PODMAN is set: run scripts/podman-setup.sh"
        );
    }
    Ok(Some(
        "podman is not installed (scripts/podman-setup.sh installs it; WEIR_REQUIRE_PODMAN=1 makes this a failure)"
            .into(),
    ))
}

/// The images a test runs, by full reference.
#[derive(Debug, Clone)]
pub struct Images {
    pub broker: String,
    pub coordinator: String,
}

/// The broker and coordinator images: `$WEIR_IMAGE_TAG` if set (they must exist), else the
/// `:dev` tag after `scripts/build-images.sh --no-operator` has rebuilt them from this
/// checkout.
pub fn images() -> anyhow::Result<Images> {
    let tag = match std::env::var("WEIR_IMAGE_TAG") {
        Ok(tag) => tag,
        Err(_) => {
            let script = workspace_root().join("scripts/build-images.sh");
            eprintln!(
                "building the images ({} --no-operator; WEIR_IMAGE_TAG=<tag> uses prebuilt ones instead)",
                script.display()
            );
            let status = Command::new("bash")
                .arg(&script)
                .arg("--no-operator")
                .env("WEIR_CONTAINER_ENGINE", "podman")
                .stdin(Stdio::null())
                .status()
                .with_context(|| format!("running {}", script.display()))?;
            if !status.success() {
                bail!("{} failed ({status})", script.display());
            }
            "dev".to_string()
        }
    };
    let images = Images {
        broker: format!("{REGISTRY}/broker:{tag}"),
        coordinator: format!("{REGISTRY}/coordinator:{tag}"),
    };
    for image in [&images.broker, &images.coordinator] {
        podman(&["image", "exists", image]).with_context(|| {
            format!("image {image} does not exist: build it with scripts/build-images.sh")
        })?;
    }
    Ok(images)
}

/// Runs `podman ARGS`; fails with its stderr when it exits non-zero.
pub fn podman(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("podman").args(args))
}

/// One container to start; see [`PodmanNetwork::run`].
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Short name, unique on the network: the container is `<network>-<name>`.
    pub name: String,
    pub image: String,
    /// The last octet of its address on the network (from 2; .1 is the host's bridge).
    pub host: u8,
    /// Names other containers on the network resolve to it (aardvark-dns).
    pub aliases: Vec<String>,
    /// Arguments after the image: the entrypoint's flags.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A podman network of one test, and the containers started on it; see the module
/// documentation.
#[derive(Debug)]
pub struct PodmanNetwork {
    name: String,
    subnet: [u8; 2],
    /// Full container names, in start order.
    containers: Vec<String>,
}

impl PodmanNetwork {
    /// Creates `weir-e2e-<random>` with DNS on a free 10.X.Y.0/24 (X in 210..=249: clear of
    /// the 10.100-199 range of [`crate::netns`] and of the low ranges machines use), after
    /// removing what killed runs left behind.
    pub fn new() -> anyhow::Result<PodmanNetwork> {
        remove_stale();
        let pid = std::process::id().to_string();
        let mut last = String::new();
        for _ in 0..SUBNET_ATTEMPTS {
            let r = random();
            let name = format!("{NAME_PREFIX}{:08x}", r as u32);
            let subnet = [210 + ((r >> 32) % 40) as u8, (r >> 40) as u8];
            let cidr = format!("10.{}.{}.0/24", subnet[0], subnet[1]);
            let gateway = format!("10.{}.{}.1", subnet[0], subnet[1]);
            match podman(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &cidr,
                "--gateway",
                &gateway,
                "--label",
                &format!("{PID_LABEL}={pid}"),
                &name,
            ]) {
                Ok(_) => {
                    return Ok(PodmanNetwork {
                        name,
                        subnet,
                        containers: Vec::new(),
                    });
                }
                // Most likely the subnet is taken; another one is tried.
                Err(e) => last = format!("{e:#}"),
            }
        }
        bail!("podman network create failed {SUBNET_ATTEMPTS} times; last: {last}")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// 10.X.Y.`host` on this network.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], host)
    }

    /// The full name of container `name`.
    pub fn container(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }

    /// Starts a container in the background (`podman run -d`) at its fixed address, with its
    /// aliases. Not removed when it exits, so its log survives a kill.
    pub fn run(&mut self, spec: &ContainerSpec) -> anyhow::Result<()> {
        assert!(spec.host >= 2, "10.X.Y.1 is the host's bridge");
        let full = self.container(&spec.name);
        let ip = self.ip(spec.host).to_string();
        let label = format!("{PID_LABEL}={}", std::process::id());
        let mut args: Vec<&str> = vec![
            "run",
            "--detach",
            "--name",
            &full,
            "--hostname",
            &spec.name,
            "--label",
            &label,
            "--network",
            &self.name,
            "--ip",
            &ip,
        ];
        for a in &spec.aliases {
            args.extend(["--network-alias", a]);
        }
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for e in &env {
            args.extend(["--env", e]);
        }
        args.push(&spec.image);
        args.extend(spec.args.iter().map(String::as_str));
        // Registered first: a container that was created but failed to start still goes.
        self.containers.push(full.clone());
        podman(&args).with_context(|| {
            format!(
                "starting {full} from {} (podman as root on this machine kind needs scripts/podman-setup.sh)",
                spec.image
            )
        })?;
        Ok(())
    }

    /// `podman kill` (SIGKILL) of container `name`; returns once podman has seen it exit.
    pub fn kill(&self, name: &str) -> anyhow::Result<()> {
        let full = self.container(name);
        podman(&["kill", &full])?;
        podman(&["wait", &full])?;
        Ok(())
    }

    /// Starts an exited container `name` again: same filesystem (its data directory
    /// included), same address.
    pub fn start(&self, name: &str) -> anyhow::Result<()> {
        podman(&["start", &self.container(name)]).map(|_| ())
    }

    /// Whether container `name` is running.
    pub fn running(&self, name: &str) -> anyhow::Result<bool> {
        let out = podman(&[
            "inspect",
            "--format",
            "{{.State.Running}}",
            &self.container(name),
        ])?;
        Ok(out.trim() == "true")
    }

    /// Containers that exited without the test asking for it, with their exit codes.
    pub fn exited(&self) -> Vec<(String, String)> {
        self.containers
            .iter()
            .filter_map(|c| {
                let out = podman(&[
                    "inspect",
                    "--format",
                    "{{.State.Status}} {{.State.ExitCode}}",
                    c,
                ])
                .ok()?;
                let (status, code) = out.trim().split_once(' ')?;
                (status != "running").then(|| (c.clone(), code.to_string()))
            })
            .collect()
    }

    /// The last `lines` lines of container `name`'s output (stdout and stderr).
    pub fn logs(&self, name: &str, lines: usize) -> String {
        self.logs_of(&self.container(name), lines)
    }

    fn logs_of(&self, full: &str, lines: usize) -> String {
        match Command::new("podman")
            .args(["logs", "--tail", &lines.to_string(), full])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("podman logs {full}: {e}"),
        }
    }
}

impl Drop for PodmanNetwork {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("WEIR_E2E_KEEP_LOGS").is_some() {
            for c in &self.containers {
                eprintln!(
                    "----- {c} (last {LOG_TAIL_LINES} lines) -----\n{}",
                    self.logs_of(c, LOG_TAIL_LINES)
                );
            }
        }
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "--force", "--time", "0"];
            args.extend(self.containers.iter().map(String::as_str));
            if let Err(e) = podman(&args) {
                eprintln!("removing the containers of {}: {e:#}", self.name);
            }
        }
        if let Err(e) = podman(&["network", "rm", "--force", &self.name]) {
            eprintln!("removing network {}: {e:#}", self.name);
        }
    }
}

/// Removes containers and networks labelled by test processes that no longer run.
pub fn remove_stale() {
    let dead = |pid: &str| {
        pid.parse::<u32>()
            .is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    };
    let format = format!("{{{{.Names}}}} {{{{index .Labels \"{PID_LABEL}\"}}}}");
    if let Ok(out) = podman(&[
        "ps",
        "--all",
        "--filter",
        &format!("label={PID_LABEL}"),
        "--format",
        &format,
    ]) {
        let stale: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, pid)| dead(pid))
            .map(|(name, _)| name)
            .collect();
        if !stale.is_empty() {
            let mut args = vec!["rm", "--force", "--time", "0"];
            args.extend(stale);
            let _ = podman(&args);
        }
    }
    let format = format!("{{{{.Name}}}} {{{{index .Labels \"{PID_LABEL}\"}}}}");
    if let Ok(out) = podman(&[
        "network",
        "ls",
        "--filter",
        &format!("label={PID_LABEL}"),
        "--format",
        &format,
    ]) {
        for (name, pid) in out.lines().filter_map(|l| l.split_once(' ')) {
            if dead(pid) {
                let _ = podman(&["network", "rm", "--force", name]);
            }
        }
    }
}

/// 64 random bits (std's per-process hash keys; no RNG crate needed for a name).
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
