//! `[block]` in agent.toml: whether direct connections to the watched clusters are refused,
//! and who may still connect.

use std::path::{Component, PathBuf};

use serde::Deserialize;

/// Capacity of the kernel's allow maps (`ALLOW_UIDS`, `ALLOW_CGROUPS`).
pub const MAX_ALLOWED: usize = 256;

/// `[block]`: refuse connections to the watched clusters' TCP ports (on this host's
/// addresses) and unix sockets, except from the agent (its shim), the clusters' own
/// processes and the processes allowed here. Off by default.
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
        if self.enabled && !shim && self.allow_uids.is_empty() && self.allow_cgroups.is_empty() {
            problems.push(
                "enabled = true without [shim], allow_uids or allow_cgroups: no client could reach the servers at all; configure the shim or allow someone"
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
        };
        assert!(block.check(true)[0].contains("at most 256"));
    }
}
