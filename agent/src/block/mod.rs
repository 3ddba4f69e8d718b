//! Blocking direct connections (`[block]`): the kernel (cgroup `connect4`/`connect6`/
//! `connect_unix` hooks on the cgroup v2 root) refuses connects to the watched clusters'
//! ports and sockets unless they come from the agent and its shim, the clusters' own
//! processes, or an allowed uid or cgroup; and an `sk_lookup` program in the agent's network
//! namespace refuses connection requests from other hosts to the same ports unless they come
//! from an `allow_remote` network. This module resolves
//! what the kernel cannot know by itself, this host's addresses (local clients, judged by
//! the connect hooks, are let through `sk_lookup` by address) and the allowed cgroups'
//! ids, and keeps both current while the agent runs. Refused connects come back as
//! `connection_blocked` events through the capture.

pub mod config;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{debug, warn};

use crate::capture::Capture;
use crate::capture::loader::{BlockMaps, LoadError};
pub use config::{BlockConfig, Network};

/// How often addresses and cgroup ids are re-read (interfaces and units come and go).
const REFRESH: Duration = Duration::from_secs(2);

/// Why blocking could not be turned on.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The kernel program or its maps (names the missing kernel feature).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// There is no cgroup v2 hierarchy to attach the hooks to.
    #[error(
        "[block] needs a cgroup v2 (cgroup2) filesystem to attach its connect hooks to, and none is mounted (looked in /proc/mounts)"
    )]
    NoCgroup2,
}

/// Keeps the kernel's view of local addresses and allowed cgroups current.
pub struct Guard {
    maps: BlockMaps,
    cgroup_root: PathBuf,
    cgroups: Vec<PathBuf>,
    missing: HashSet<PathBuf>,
}

/// Turns blocking on in `capture` when `config.enabled` (before the capture runs, so every
/// cluster it adopts is protected), with the addresses and cgroups resolved once; `None`
/// when blocking is off.
pub fn start(capture: &mut Capture, config: &BlockConfig) -> Result<Option<Guard>, BlockError> {
    if !config.enabled {
        return Ok(None);
    }
    let cgroup_root = cgroup2_mount().ok_or(BlockError::NoCgroup2)?;
    let allow_remote: Vec<([u8; 16], u32)> = config.allow_remote.iter().map(|n| n.key()).collect();
    let maps = capture.enable_block(
        std::process::id(),
        &config.allow_uids,
        &allow_remote,
        &cgroup_root,
    )?;
    let mut guard = Guard {
        maps,
        cgroup_root,
        cgroups: config.allow_cgroups.clone(),
        missing: HashSet::new(),
    };
    guard.refresh()?;
    Ok(Some(guard))
}

impl Guard {
    /// Re-reads this host's addresses and the allowed cgroups' ids into the kernel maps.
    pub fn refresh(&mut self) -> Result<(), LoadError> {
        self.maps.set_local_addrs(&local_addrs())?;
        let mut ids = HashSet::new();
        for path in &self.cgroups {
            match cgroup_id(&self.cgroup_root, path) {
                Ok(id) => {
                    if self.missing.remove(path) {
                        debug!(cgroup = %path.display(), id, "allowed cgroup appeared");
                    }
                    ids.insert(id);
                }
                Err(e) => {
                    if self.missing.insert(path.clone()) {
                        warn!(cgroup = %path.display(), error = %e, "allowed cgroup does not exist (yet): its processes are refused until it does");
                    }
                }
            }
        }
        self.maps.set_allowed_cgroups(&ids)
    }

    /// Refreshes every [`REFRESH`] until `stop` completes.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(REFRESH);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.refresh() {
                        warn!(error = %e, "cannot update the block maps");
                    }
                }
                () = &mut stop => return,
            }
        }
    }
}

/// This host's interface addresses except loopback (the kernel program treats loopback by
/// network namespace), as IPv6 map keys (IPv4 mapped to `::ffff:a.b.c.d`).
fn local_addrs() -> HashSet<[u8; 16]> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return HashSet::new();
    };
    addrs
        .filter_map(|a| {
            let s = a.address?;
            s.as_sockaddr_in()
                .map(|v| IpAddr::V4(v.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v| IpAddr::V6(v.ip())))
        })
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(addr_key)
        .collect()
}

/// An address as the kernel program compares it: IPv6 octets, IPv4 mapped.
pub fn addr_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The cgroup v2 id of `path` (relative to the cgroup2 mount `root`): its inode number.
fn cgroup_id(root: &Path, path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let relative = path.strip_prefix("/").unwrap_or(path);
    Ok(std::fs::metadata(root.join(relative))?.ino())
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` in the hybrid layout).
fn cgroup2_mount() -> Option<PathBuf> {
    parse_cgroup2_mount(&std::fs::read_to_string("/proc/mounts").ok()?)
}

/// The first `cgroup2` mount point in a `/proc/mounts` text.
fn parse_cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(target.replace("\\040", " ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_mount_is_found_in_hybrid_and_unified_layouts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            parse_cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"),
            None
        );
    }

    #[test]
    fn ipv4_addresses_are_mapped_like_the_kernel_expects() {
        let key = addr_key("10.1.2.3".parse().unwrap());
        assert_eq!(key[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(key[12..], [10, 1, 2, 3]);
        assert_eq!(addr_key("::1".parse().unwrap())[15], 1);
    }

    #[test]
    fn cgroup_ids_are_directory_inodes() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a.slice")).unwrap();
        let ino = std::fs::metadata(dir.path().join("a.slice")).unwrap().ino();
        assert_eq!(cgroup_id(dir.path(), Path::new("/a.slice")).unwrap(), ino);
        assert!(cgroup_id(dir.path(), Path::new("/missing")).is_err());
    }
}
