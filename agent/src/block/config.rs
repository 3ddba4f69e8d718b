//! `[block]` in agent.toml: whether direct connections to the watched clusters are refused,
//! and who may still connect.

use std::fmt;
use std::net::IpAddr;
use std::path::{Component, PathBuf};

use serde::Deserialize;

/// Capacity of the kernel's allow maps (`ALLOW_UIDS`, `ALLOW_CGROUPS`).
pub const MAX_ALLOWED: usize = 256;

/// Capacity of the kernel's `ALLOW_REMOTE` map.
pub const MAX_ALLOWED_NETWORKS: usize = 1024;

/// `[block]`: refuse connections to the watched clusters' TCP ports (on this host's
/// addresses) and unix sockets, except from the agent (its shim), the clusters' own
/// processes and the processes allowed here; and connections from other hosts, except from
/// the networks allowed here. Off by default.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// Turn blocking on (default `false`). Needs cgroup v2 and the kernel's cgroup connect
    /// hooks (unix sockets: Linux 6.7+): `dbward run` refuses to start without them rather
    /// than run unprotected.
    #[serde(default)]
    pub enabled: bool,
    /// Real uids whose processes may still connect directly (e.g. the `postgres` user for
    /// maintenance).
    #[serde(default)]
    pub allow_uids: Vec<u32>,
    /// cgroup v2 paths, relative to the cgroup2 mount (`/system.slice/backup.service`),
    /// whose processes, and those of their sub-cgroups, may still connect directly.
    #[serde(default)]
    pub allow_cgroups: Vec<PathBuf>,
    /// Networks on other hosts whose clients may still connect directly to the clusters'
    /// TCP ports: CIDRs (`10.0.0.0/24`, `2001:db8::/64`) or single addresses
    /// (`192.0.2.7`). Empty (the default): every client on another host is refused.
    #[serde(default)]
    pub allow_remote: Vec<Network>,
}

/// An IPv4 or IPv6 network from `allow_remote`: an address and a prefix length, with no
/// host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// The network as the kernel's `ALLOW_REMOTE` key: an IPv6 prefix and its length in
    /// bits, IPv4 networks mapped to `::ffff:a.b.c.d/(96 + length)`, as the kernel program
    /// maps IPv4 clients.
    pub fn key(&self) -> ([u8; 16], u32) {
        match self.addr {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 96 + u32::from(self.prefix)),
            IpAddr::V6(v6) => (v6.octets(), u32::from(self.prefix)),
        }
    }
}

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let example = "write a network like `10.0.0.0/24` or `2001:db8::/64`, or one address like `192.0.2.7`";
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.trim().parse().map_err(|_| {
            format!("allow_remote: `{text}` is not an IP address or network; {example}")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "allow_remote: `{text}` has a bad prefix length `{p}` (0 to {max} for {}); {example}",
                        if addr.is_ipv4() { "IPv4" } else { "IPv6" }
                    ));
                }
            },
        };
        let network = Self { addr, prefix };
        let masked = network.masked();
        if masked != addr {
            return Err(format!(
                "allow_remote: `{text}` has bits set after the first {prefix}: write the network `{masked}/{prefix}`, or the single address `{addr}`"
            ));
        }
        Ok(network)
    }
}

impl Network {
    /// The address with every bit after the prefix cleared.
    fn masked(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl BlockConfig {
    /// Every problem at once; `shim` says whether `[shim]` is configured.
    pub fn check(&self, shim: bool) -> Vec<String> {
        let mut problems = Vec::new();
        for path in &self.allow_cgroups {
            let text = path.display();
            if !path.is_absolute() {
                problems.push(format!(
                    "allow_cgroups: `{text}` must be an absolute path below the cgroup2 mount, e.g. `/system.slice/backup.service`"
                ));
            } else if path
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            {
                problems.push(format!(
                    "allow_cgroups: `{text}` must not contain `.` or `..`"
                ));
            } else if path.components().count() < 2 {
                problems.push(format!(
                    "allow_cgroups: `{text}` is the root cgroup: it would allow every process; remove it, or set enabled = false"
                ));
            }
        }
        for (name, n) in [
            ("allow_uids", self.allow_uids.len()),
            ("allow_cgroups", self.allow_cgroups.len()),
        ] {
            if n > MAX_ALLOWED {
                problems.push(format!(
                    "{name} has {n} entries; the kernel map holds at most {MAX_ALLOWED}"
                ));
            }
        }
        if self.allow_remote.len() > MAX_ALLOWED_NETWORKS {
            problems.push(format!(
                "allow_remote has {} entries; the kernel map holds at most {MAX_ALLOWED_NETWORKS}",
                self.allow_remote.len()
            ));
        }
        if self.enabled
            && !shim
            && self.allow_uids.is_empty()
            && self.allow_cgroups.is_empty()
            && self.allow_remote.is_empty()
        {
            problems.push(
                "enabled = true without [shim], allow_uids, allow_cgroups or allow_remote: no client could reach the servers at all; configure the shim or allow someone"
                    .to_owned(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;
    use std::path::Path;

    fn parse(text: &str) -> AgentConfig {
        AgentConfig::parse(Path::new("a.toml"), text).unwrap()
    }

    #[test]
    fn block_is_off_by_default() {
        assert_eq!(parse("").block, BlockConfig::default());
        assert!(!parse("").block.enabled);
    }

    #[test]
    fn block_section_parses() {
        let cfg = parse(
            "[block]\nenabled = true\nallow_uids = [0, 105]\nallow_cgroups = [\"/system.slice/backup.service\"]\n",
        );
        assert!(cfg.block.enabled);
        assert_eq!(cfg.block.allow_uids, vec![0, 105]);
        assert_eq!(
            cfg.block.allow_cgroups,
            vec![PathBuf::from("/system.slice/backup.service")]
        );
        assert!(cfg.block.check(false).is_empty());
    }

    #[test]
    fn unknown_or_mistyped_block_keys_are_rejected_with_their_place() {
        let err = AgentConfig::parse(Path::new("a.toml"), "[block]\nenable = true\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("a.toml:2:1: "), "{text}");
        assert!(text.contains("enabled"), "{text}");
        let err = AgentConfig::parse(Path::new("a.toml"), "[block]\nallow_uids = [-1]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("a.toml:2:"), "{err}");
    }

    #[test]
    fn bad_cgroup_paths_are_all_reported() {
        let block = BlockConfig {
            enabled: true,
            allow_uids: vec![],
            allow_remote: vec![],
            allow_cgroups: vec![
                "system.slice".into(),
                "/a/../b".into(),
                "/".into(),
                "/ok.slice".into(),
            ],
        };
        let problems = block.check(true);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("absolute"));
        assert!(problems[1].contains(".."));
        assert!(problems[2].contains("root cgroup"));
    }

    #[test]
    fn blocking_everyone_is_a_mistake() {
        let block = BlockConfig {
            enabled: true,
            ..BlockConfig::default()
        };
        assert_eq!(block.check(false).len(), 1);
        assert!(block.check(true).is_empty());
        let off = BlockConfig::default();
        assert!(off.check(false).is_empty());
    }

    #[test]
    fn block_problems_are_prefixed_with_the_section() {
        let cfg = parse("[block]\nenabled = true\nallow_cgroups = [\"x\"]\n");
        let problems = cfg.check();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("[block] allow_cgroups")),
            "{problems:?}"
        );
    }

    #[test]
    fn too_many_uids_do_not_fit_the_kernel_map() {
        let block = BlockConfig {
            enabled: true,
            allow_uids: (0..300).collect(),
            allow_cgroups: vec![],
            allow_remote: vec![],
        };
        assert!(block.check(true)[0].contains("at most 256"));
    }
    #[test]
    fn allow_remote_parses_networks_and_single_addresses() {
        let cfg = parse(
            "[block]\nenabled = true\nallow_remote = [\"10.0.0.0/24\", \"2001:db8::/64\", \"192.0.2.7\", \"::1\", \"0.0.0.0/0\"]\n",
        );
        let shown: Vec<String> = cfg
            .block
            .allow_remote
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "10.0.0.0/24",
                "2001:db8::/64",
                "192.0.2.7/32",
                "::1/128",
                "0.0.0.0/0"
            ]
        );
        assert!(cfg.check().is_empty(), "{:?}", cfg.check());
        assert!(parse("").block.allow_remote.is_empty());
    }

    #[test]
    fn bad_networks_are_rejected_at_their_place_naming_the_value() {
        let cases = [
            ("10.0.0.0/33", "bad prefix length `33` (0 to 32 for IPv4)"),
            (
                "2001:db8::/129",
                "bad prefix length `129` (0 to 128 for IPv6)",
            ),
            ("10.0.0.0/", "bad prefix length ``"),
            ("10.0.0.0/x", "bad prefix length `x`"),
            ("db.example.com", "is not an IP address or network"),
            ("10.0.0/24", "is not an IP address or network"),
            (
                "10.0.0.5/24",
                "write the network `10.0.0.0/24`, or the single address `10.0.0.5`",
            ),
            ("2001:db8::1/64", "write the network `2001:db8::/64`"),
        ];
        for (value, expected) in cases {
            let text =
                format!("[block]\nenabled = true\nallow_remote = [\"192.0.2.7\", \"{value}\"]\n");
            let err = AgentConfig::parse(Path::new("a.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("a.toml:3:"), "{value}: {err}");
            assert!(err.contains(&format!("`{value}`")), "{value}: {err}");
            assert!(err.contains(expected), "{value}: {err}");
        }
        let err = AgentConfig::parse(
            Path::new("a.toml"),
            "[block]\nallow_remote = \"10.0.0.0/8\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("a.toml:2:"), "{err}");
    }

    #[test]
    fn network_keys_match_the_kernel_maps_ipv4_mapping() {
        let net = |s: &str| s.parse::<Network>().unwrap().key();
        let (key, len) = net("10.1.2.0/24");
        assert_eq!(key, crate::block::addr_key("10.1.2.0".parse().unwrap()));
        assert_eq!(len, 96 + 24);
        assert_eq!(
            net("192.0.2.7"),
            (crate::block::addr_key("192.0.2.7".parse().unwrap()), 128)
        );
        assert_eq!(net("0.0.0.0/0").1, 96);
        let (key, len) = net("2001:db8::/64");
        assert_eq!(key[..4], [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(key[4..], [0; 12]);
        assert_eq!(len, 64);
        assert_eq!(net("::/0"), ([0; 16], 0));
    }

    #[test]
    fn allowing_only_remote_networks_is_enough_to_reach_the_servers() {
        let block = BlockConfig {
            enabled: true,
            allow_remote: vec!["10.0.0.0/8".parse().unwrap()],
            ..BlockConfig::default()
        };
        assert!(block.check(false).is_empty());
        let too_many = BlockConfig {
            allow_remote: vec!["10.0.0.0/8".parse().unwrap(); MAX_ALLOWED_NETWORKS + 1],
            ..block
        };
        assert!(too_many.check(true)[0].contains("at most 1024"));
    }
}
