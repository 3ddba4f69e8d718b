//! Checks, before loading, that the kernel and the process have what the programs need, so a
//! failure names the missing feature instead of a bare `EPERM`.

use std::path::Path;

/// A kernel feature or privilege the capture needs and did not find.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{feature} is not available: {detail}")]
pub struct MissingFeature {
    /// Short name of what is missing (BTF, tracefs, uprobes, ring buffer, privileges).
    pub feature: &'static str,
    /// What was looked at and what to do.
    pub detail: String,
}

fn missing(feature: &'static str, detail: impl Into<String>) -> MissingFeature {
    MissingFeature {
        feature,
        detail: detail.into(),
    }
}

/// Mounts tracefs and bpffs if absent (ignoring "already mounted") and checks the rest.
pub fn check() -> Result<(), MissingFeature> {
    privileges()?;
    mount_if_missing("tracefs", "/sys/kernel/tracing");
    mount_if_missing("bpf", "/sys/fs/bpf");
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(missing(
            "BTF",
            "/sys/kernel/btf/vmlinux is missing: the kernel needs CONFIG_DEBUG_INFO_BTF=y",
        ));
    }
    let events = Path::new("/sys/kernel/tracing/events");
    if !events.join("syscalls/sys_enter_connect").exists() {
        return Err(missing(
            "syscall tracepoints",
            "/sys/kernel/tracing/events/syscalls/sys_enter_connect is missing: the kernel needs CONFIG_FTRACE_SYSCALLS=y and tracefs mounted at /sys/kernel/tracing",
        ));
    }
    if !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        return Err(missing(
            "uprobes",
            "/sys/bus/event_source/devices/uprobe is missing: the kernel needs CONFIG_UPROBE_EVENTS=y",
        ));
    }
    Ok(())
}

fn privileges() -> Result<(), MissingFeature> {
    // CAP_BPF = 39, CAP_PERFMON = 38, CAP_SYS_ADMIN = 21 (older kernels).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(21) || (has(39) && has(38)) {
        Ok(())
    } else {
        Err(missing(
            "privileges",
            format!(
                "the agent needs CAP_BPF and CAP_PERFMON (and CAP_SYS_ADMIN to attach uprobes, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to inspect processes and tracefs); effective capabilities are {effective:#x}: run as root or under the dbward systemd unit"
            ),
        ))
    }
}

fn mount_if_missing(fstype: &str, target: &str) {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(target))
    {
        return;
    }
    let result = nix::mount::mount(
        Some(fstype),
        target,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    if let Err(err) = result {
        tracing::warn!(fstype, target, %err, "could not mount");
    }
}
