//! Loads the kernel programs, attaches them, and owns the maps the agent writes.

use std::collections::HashSet;
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use agent_common::{DROP_SLOTS, EventKind, KEYWORD_LEN, UNIX_PATH_LEN};
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SkLookup, TracePoint, UProbe};
use aya::{Ebpf, include_bytes_aligned};
use tracing::{debug, info, warn};

use super::{mariadb, points, preflight};

/// The kernel object built by `build.rs` from `agent-ebpf`.
static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dbward"));

/// Errors while loading or attaching the kernel programs.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kernel or the process lacks something the programs need.
    #[error("{0}")]
    Missing(#[from] preflight::MissingFeature),
    /// The object could not be loaded (verifier, maps, BTF).
    #[error("loading the kernel programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program could not be loaded or attached.
    #[error("{what}: {source}")]
    Program {
        /// Which program and where.
        what: String,
        /// The cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map could not be opened or updated.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// A server binary to attach to could not be found.
    #[error("server binary {path}: {source}")]
    Binary {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A MariaDB server binary cannot be probed (symbols or `THD` layout not found).
    #[error("MariaDB server binary {path}: {reason}")]
    Mariadb {
        /// The binary.
        path: PathBuf,
        /// Why.
        reason: mariadb::NotProbeable,
    },
    /// The object lacks a map or program the agent expects (a build mismatch).
    #[error("the kernel object has no {0}: rebuild with `cargo xtask build`")]
    MissingItem(String),
}

/// Session uprobes attached in each PostgreSQL server binary: (program, symbol).
const SESSION_PROBES: &[(&str, &str)] = &[
    ("init_postgres", "InitPostgres"),
    ("init_postgres_ret", "InitPostgres"),
    ("report_appname", "pgstat_report_appname"),
];

/// Classic statement uprobes (see [`points`]): (program, symbol).
const CLASSIC_PROBES: &[(&str, &str)] = &[
    ("pq_getbyte_ret", "pq_getbyte"),
    ("pgstat_report_activity", "pgstat_report_activity"),
];

/// With classic points, the uprobe that stops flagged backends before a statement is
/// parsed: (program, symbol).
const HOLD_PROBE: (&str, &str) = ("parse_query", "pg_parse_query");

/// The program attached at each direct point.
const SITE_PROGRAM: &str = "report_site";

/// MariaDB programs, each attached to the symbol [`mariadb::MariadbBinary`] names.
const MARIADB_PROGRAMS: [&str; 3] = ["mysql_dispatch", "mysql_login", "mysql_end"];

/// Which statement points to attach (see [`points`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatementPoints {
    /// Direct points where the binary's machine code shows them, classic elsewhere.
    #[default]
    Auto,
    /// Classic points everywhere.
    Classic,
}

/// The statement points attached to one binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedPoints {
    /// One probe per statement on its reporting call.
    Direct,
    /// `pgstat_report_activity` and `pq_getbyte`.
    Classic,
}

impl AttachedPoints {
    /// `direct` or `classic`, as events and status name them.
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Classic => "classic",
        }
    }
}

/// Syscall and scheduler tracepoints: (program, category, name).
const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("accept_enter", "syscalls", "sys_enter_accept"),
    ("accept_enter", "syscalls", "sys_enter_accept4"),
    ("accept_exit", "syscalls", "sys_exit_accept"),
    ("accept_exit", "syscalls", "sys_exit_accept4"),
    ("process_fork", "sched", "sched_process_fork"),
    ("process_exit", "sched", "sched_process_exit"),
    ("process_exec", "sched", "sched_process_exec"),
    ("connect_enter", "syscalls", "sys_enter_connect"),
    ("connect_exit", "syscalls", "sys_exit_connect"),
];

/// The loaded programs and the maps the agent updates.
pub struct Loader {
    ebpf: Ebpf,
    /// Binaries the uprobes are attached to, by (device, inode) as uprobes bind to them (one
    /// binary is reached through each postmaster's `/proc/<pid>/exe` and through
    /// `--binary`), with their statement points.
    attached_binaries: std::collections::HashMap<(u64, u64), AttachedPoints>,
    /// MariaDB server binaries probed, by (device, inode), with their `MYSQL_LAYOUTS` slot.
    mariadb_binaries: std::collections::HashMap<(u64, u64), u32>,
    /// The `cgroup/connect_unix` link of `[block]` (closing it detaches the program).
    unix_connect_link: Option<std::os::fd::OwnedFd>,
    /// Classic statement uprobes for binaries without direct points: [`CLASSIC_PROBES`],
    /// plus [`HOLD_PROBE`] when holds are possible.
    classic_probes: Vec<(&'static str, &'static str)>,
    /// Which statement points to look for.
    points: StatementPoints,
}

impl Loader {
    /// Checks the kernel, loads the object and attaches the tracepoints; `holds`: whether
    /// server binaries with classic points also get the hold probe.
    pub fn load(holds: bool, points: StatementPoints) -> Result<Self, LoadError> {
        preflight::check()?;
        let mut ebpf = Ebpf::load(OBJECT)?;
        let mut loaded = HashSet::new();
        for &(program, category, name) in TRACEPOINTS {
            let prog: &mut TracePoint = program_mut(&mut ebpf, program)?;
            if loaded.insert(program) {
                prog.load().map_err(|source| LoadError::Program {
                    what: format!("loading tracepoint program {program}"),
                    source,
                })?;
            }
            prog.attach(category, name)
                .map_err(|source| LoadError::Program {
                    what: format!("attaching {program} to tracepoint {category}/{name}"),
                    source,
                })?;
        }
        let mut classic_probes = CLASSIC_PROBES.to_vec();
        if holds {
            classic_probes.push(HOLD_PROBE);
        }
        let programs = SESSION_PROBES
            .iter()
            .chain(&classic_probes)
            .map(|&(program, _)| program)
            .chain([SITE_PROGRAM])
            .chain(MARIADB_PROGRAMS);
        for program in programs {
            let prog: &mut UProbe = program_mut(&mut ebpf, program)?;
            prog.load().map_err(|source| LoadError::Program {
                what: format!("loading uprobe program {program}"),
                source,
            })?;
        }
        info!(tracepoints = TRACEPOINTS.len(), "kernel programs loaded");
        Ok(Self {
            ebpf,
            attached_binaries: std::collections::HashMap::new(),
            mariadb_binaries: std::collections::HashMap::new(),
            unix_connect_link: None,
            classic_probes,
            points,
        })
    }

    /// Attaches the server uprobes to `binary` (once per binary file, whatever the path it
    /// is reached by; the probes then fire in every process running it, including clusters
    /// started later). Returns the statement points it got.
    pub fn attach_server_binary(&mut self, binary: &Path) -> Result<AttachedPoints, LoadError> {
        let meta = std::fs::metadata(binary).map_err(|source| LoadError::Binary {
            path: binary.to_path_buf(),
            source,
        })?;
        let id = (meta.dev(), meta.ino());
        if let Some(&points) = self.attached_binaries.get(&id) {
            return Ok(points);
        }
        let sites = match self.points {
            StatementPoints::Auto => points::find(binary).map_err(|reason| {
                info!(binary = %binary.display(), %reason, "classic statement points");
            }),
            StatementPoints::Classic => Err(()),
        };
        let attached = match sites {
            Ok(sites) => {
                let prog: &mut UProbe = program_mut(&mut self.ebpf, SITE_PROGRAM)?;
                for site in sites {
                    let point = UProbeAttachPoint {
                        location: UProbeAttachLocation::AbsoluteOffset(site.file_offset),
                        cookie: Some(site.kind as u64),
                    };
                    prog.attach(point, binary, UProbeScope::AllProcesses)
                        .map_err(|source| LoadError::Program {
                            what: format!(
                                "attaching {SITE_PROGRAM} to the {:?} statement point at {:#x} in {}",
                                site.kind,
                                site.address,
                                binary.display()
                            ),
                            source,
                        })?;
                }
                AttachedPoints::Direct
            }
            Err(()) => {
                attach_symbols(&mut self.ebpf, binary, &self.classic_probes)?;
                AttachedPoints::Classic
            }
        };
        attach_symbols(&mut self.ebpf, binary, SESSION_PROBES)?;
        info!(binary = %binary.display(), statement_points = ?attached, "uprobes attached");
        self.attached_binaries.insert(id, attached);
        Ok(attached)
    }

    /// Attaches the MariaDB uprobes to `binary` (once per binary file), after storing the
    /// `THD` layout its accessors show in the slot the probes' cookie names.
    pub fn attach_mariadb_binary(&mut self, binary: &Path) -> Result<(), LoadError> {
        let meta = std::fs::metadata(binary).map_err(|source| LoadError::Binary {
            path: binary.to_path_buf(),
            source,
        })?;
        let id = (meta.dev(), meta.ino());
        if self.mariadb_binaries.contains_key(&id) {
            return Ok(());
        }
        let found = mariadb::inspect(binary).map_err(|reason| LoadError::Mariadb {
            path: binary.to_path_buf(),
            reason,
        })?;
        let slot = self.mariadb_binaries.len() as u32;
        if slot >= agent_common::MYSQL_LAYOUT_SLOTS {
            return Err(LoadError::Mariadb {
                path: binary.to_path_buf(),
                reason: mariadb::NotProbeable::Unreadable(format!(
                    "at most {} distinct MariaDB server binaries are probed",
                    agent_common::MYSQL_LAYOUT_SLOTS
                )),
            });
        }
        let l = found.layout;
        let map = self
            .ebpf
            .map_mut("MYSQL_LAYOUTS")
            .ok_or_else(|| LoadError::MissingItem("map MYSQL_LAYOUTS".into()))?;
        // `MysqlLayout` is six `u32`s (`#[repr(C)]`).
        Array::<_, [u32; 6]>::try_from(map)
            .and_then(|mut layouts| {
                layouts.set(
                    slot,
                    [l.thread_id, l.security_ctx, l.user, l.host, l.ip, l.db],
                    0,
                )
            })
            .map_err(|source| LoadError::Map {
                name: "MYSQL_LAYOUTS",
                source,
            })?;
        for (program, symbol) in
            MARIADB_PROGRAMS
                .into_iter()
                .zip([&found.dispatch, &found.login, &found.end])
        {
            let prog: &mut UProbe = program_mut(&mut self.ebpf, program)?;
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::Symbol(symbol),
                cookie: Some(u64::from(slot)),
            };
            prog.attach(point, binary, UProbeScope::AllProcesses)
                .map_err(|source| LoadError::Program {
                    what: format!("attaching {program} to {symbol} in {}", binary.display()),
                    source,
                })?;
        }
        info!(binary = %binary.display(), layout = ?found.layout, "MariaDB uprobes attached");
        self.mariadb_binaries.insert(id, slot);
        Ok(())
    }

    /// Tells the kernel to report this MariaDB server's sessions.
    pub fn watch_mariadb(&mut self, pid: u32) -> Result<(), LoadError> {
        self.hash_map::<u32, u32>("MYSQL_SERVERS")?
            .insert(pid, pid, 0)
            .map_err(|source| LoadError::Map {
                name: "MYSQL_SERVERS",
                source,
            })
    }

    /// Stops reporting a MariaDB server (it exited).
    pub fn unwatch_mariadb(&mut self, pid: u32) {
        if let Ok(mut map) = self.hash_map::<u32, u32>("MYSQL_SERVERS") {
            let _ = map.remove(&pid);
        }
    }

    /// Tells the kernel to follow accepts and forks of this postmaster.
    pub fn watch_postmaster(&mut self, pid: u32) -> Result<(), LoadError> {
        self.hash_map::<u32, u32>("POSTMASTERS")?
            .insert(pid, pid, 0)
            .map_err(|source| LoadError::Map {
                name: "POSTMASTERS",
                source,
            })
    }

    /// Stops following a postmaster that exited.
    pub fn unwatch_postmaster(&mut self, pid: u32) {
        if let Ok(mut map) = self.hash_map::<u32, u32>("POSTMASTERS") {
            let _ = map.remove(&pid);
        }
    }

    /// Marks a pre-existing backend as watched (so its exit is reported).
    pub fn watch_backend(&mut self, pid: u32, postmaster: u32) -> Result<(), LoadError> {
        self.hash_map::<u32, u32>("BACKENDS")?
            .insert(pid, postmaster, 0)
            .map_err(|source| LoadError::Map {
                name: "BACKENDS",
                source,
            })
    }

    /// Reports connects of local clients to this TCP port.
    pub fn watch_port(&mut self, port: u16) -> Result<(), LoadError> {
        self.hash_map::<u16, u8>("WATCH_PORTS")?
            .insert(port, 1, 0)
            .map_err(|source| LoadError::Map {
                name: "WATCH_PORTS",
                source,
            })
    }

    /// Reports connects of local clients to this unix socket path.
    pub fn watch_socket(&mut self, path: &Path) -> Result<(), LoadError> {
        let Some(key) = path_key(path) else {
            warn!(path = %path.display(), "socket path too long to watch");
            return Ok(());
        };
        self.hash_map::<[u8; UNIX_PATH_LEN], u8>("WATCH_SOCKETS")?
            .insert(key, 1, 0)
            .map_err(|source| LoadError::Map {
                name: "WATCH_SOCKETS",
                source,
            })
    }

    /// Attaches the programs that refuse connects to protected servers (`[block]`) to the
    /// cgroup v2 root `cgroup_root` (so they see every socket), after telling them who is
    /// always allowed: `agent_pid` (the agent and its shim) and `allow_uids`; and the
    /// `sk_lookup` program that refuses clients on other hosts to the agent's network
    /// namespace, after filling `ALLOW_REMOTE` with `allow_remote` (`(IPv6 prefix, length)`,
    /// IPv4 mapped). Fails, naming what is missing, when the kernel lacks a hook. Detached
    /// when the loader is dropped (the agent exits, however it exits).
    pub fn enable_block(
        &mut self,
        agent_pid: u32,
        allow_uids: &[u32],
        allow_remote: &[([u8; 16], u32)],
        cgroup_root: &Path,
    ) -> Result<(), LoadError> {
        let cgroup = std::fs::File::open(cgroup_root).map_err(|e| {
            LoadError::Missing(preflight::MissingFeature {
                feature: "cgroup v2",
                detail: format!(
                    "cannot open the cgroup2 root {}: {e}",
                    cgroup_root.display()
                ),
            })
        })?;
        let map = self
            .ebpf
            .map_mut("CONFIG")
            .ok_or_else(|| LoadError::MissingItem("map CONFIG".into()))?;
        let mut config = Array::<_, u32>::try_from(map).map_err(|source| LoadError::Map {
            name: "CONFIG",
            source,
        })?;
        config
            .set(agent_common::config::AGENT_PID, agent_pid, 0)
            .map_err(|source| LoadError::Map {
                name: "CONFIG",
                source,
            })?;
        let map = self
            .ebpf
            .map_mut("HOST_NETNS")
            .ok_or_else(|| LoadError::MissingItem("map HOST_NETNS".into()))?;
        let cookie = own_netns_cookie().map_err(|e| {
            LoadError::Missing(preflight::MissingFeature {
                feature: "network namespace cookies",
                detail: format!(
                    "getsockopt(SO_NETNS_COOKIE) failed: {e} (it needs Linux 5.14 or later)"
                ),
            })
        })?;
        Array::<_, u64>::try_from(map)
            .and_then(|mut netns| netns.set(0, cookie, 0))
            .map_err(|source| LoadError::Map {
                name: "HOST_NETNS",
                source,
            })?;
        let mut uids = self.hash_map::<u32, u8>("ALLOW_UIDS")?;
        for &uid in allow_uids {
            uids.insert(uid, 1, 0).map_err(|source| LoadError::Map {
                name: "ALLOW_UIDS",
                source,
            })?;
        }
        for program in ["block_connect4", "block_connect6"] {
            let prog: &mut CgroupSockAddr = program_mut(&mut self.ebpf, program)?;
            prog.load().map_err(|source| LoadError::Program {
                what: format!(
                    "loading the cgroup connect program {program} (needs CAP_NET_ADMIN or CAP_SYS_ADMIN and a kernel with CONFIG_CGROUP_BPF)"
                ),
                source,
            })?;
            prog.attach(&cgroup, CgroupAttachMode::Single)
                .map_err(|source| LoadError::Program {
                    what: format!(
                        "attaching {program} to the cgroup2 root {}",
                        cgroup_root.display()
                    ),
                    source,
                })?;
        }
        let deny = match self.ebpf.map("DENY_CONNECT") {
            Some(aya::maps::Map::LruHashMap(data)) => data.fd().as_fd(),
            _ => return Err(LoadError::MissingItem("LRU hash map DENY_CONNECT".into())),
        };
        let link = super::unix_connect::attach(deny, cgroup.as_fd()).map_err(|e| {
            LoadError::Missing(preflight::MissingFeature {
                feature: "cgroup unix connect hook",
                detail: e.to_string(),
            })
        })?;
        self.unix_connect_link = Some(link);
        info!(cgroup = %cgroup_root.display(), "direct connections to watched clusters are refused (cgroup connect hooks)");
        self.refuse_remote(allow_remote)?;
        Ok(())
    }

    /// Fills `ALLOW_REMOTE` and attaches `block_remote` (`sk_lookup`) to the agent's network
    /// namespace, where the watched servers listen.
    fn refuse_remote(&mut self, allow_remote: &[([u8; 16], u32)]) -> Result<(), LoadError> {
        let map = self
            .ebpf
            .map_mut("ALLOW_REMOTE")
            .ok_or_else(|| LoadError::MissingItem("map ALLOW_REMOTE".into()))?;
        let mut allow =
            LpmTrie::<_, [u8; 16], u8>::try_from(map).map_err(|source| LoadError::Map {
                name: "ALLOW_REMOTE",
                source,
            })?;
        for &(prefix, len) in allow_remote {
            allow
                .insert(&Key::new(len, prefix), 1, 0)
                .map_err(|source| LoadError::Map {
                    name: "ALLOW_REMOTE",
                    source,
                })?;
        }
        const NETNS: &str = "/proc/self/ns/net";
        let netns = std::fs::File::open(NETNS).map_err(|e| {
            LoadError::Missing(preflight::MissingFeature {
                feature: "network namespace",
                detail: format!("cannot open {NETNS}: {e}"),
            })
        })?;
        let prog: &mut SkLookup = program_mut(&mut self.ebpf, "block_remote")?;
        prog.load().map_err(|source| LoadError::Program {
            what: "loading the sk_lookup program block_remote, which refuses clients on other hosts (needs CAP_NET_ADMIN or CAP_SYS_ADMIN and a kernel with BPF sk_lookup, Linux 5.9 or later)".into(),
            source,
        })?;
        prog.attach(&netns).map_err(|source| LoadError::Program {
            what: format!(
                "attaching the sk_lookup program block_remote to the network namespace {NETNS} (needs CAP_NET_ADMIN and BPF sk_lookup, Linux 5.9 or later)"
            ),
            source,
        })?;
        info!(
            allowed_networks = allow_remote.len(),
            "connections from other hosts to watched clusters are refused (sk_lookup)"
        );
        Ok(())
    }

    /// Refuses connects to this TCP port on local addresses (see [`Loader::enable_block`]).
    pub fn protect_port(&mut self, port: u16) -> Result<(), LoadError> {
        self.hash_map::<u16, u8>("BLOCK_PORTS")?
            .insert(port, 1, 0)
            .map_err(|source| LoadError::Map {
                name: "BLOCK_PORTS",
                source,
            })
    }

    /// Refuses connects to this unix socket path (see [`Loader::enable_block`]).
    pub fn protect_socket(&mut self, path: &Path) -> Result<(), LoadError> {
        let Some(key) = path_key(path) else {
            warn!(path = %path.display(), "socket path too long to protect");
            return Ok(());
        };
        self.hash_map::<[u8; UNIX_PATH_LEN], u8>("BLOCK_SOCKETS")?
            .insert(key, 1, 0)
            .map_err(|source| LoadError::Map {
                name: "BLOCK_SOCKETS",
                source,
            })
    }

    /// Takes the block maps the agent keeps current: local addresses and allowed cgroups
    /// (once).
    pub fn take_block_maps(&mut self) -> Result<BlockMaps, LoadError> {
        let mut take = |name: &'static str| {
            self.ebpf
                .take_map(name)
                .ok_or_else(|| LoadError::MissingItem(format!("map {name}")))
        };
        let local_addrs = take("LOCAL_ADDRS")?;
        let allow_cgroups = take("ALLOW_CGROUPS")?;
        Ok(BlockMaps {
            local_addrs: HashMap::try_from(local_addrs).map_err(|source| LoadError::Map {
                name: "LOCAL_ADDRS",
                source,
            })?,
            allow_cgroups: HashMap::try_from(allow_cgroups).map_err(|source| LoadError::Map {
                name: "ALLOW_CGROUPS",
                source,
            })?,
        })
    }

    /// Takes the event ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| LoadError::MissingItem("map EVENTS".into()))?;
        RingBuf::try_from(map).map_err(|source| LoadError::Map {
            name: "EVENTS",
            source,
        })
    }

    /// Takes the maps that decide which backends the kernel stops (once).
    pub fn take_hold_flags(&mut self) -> Result<HoldFlags, LoadError> {
        let mut take = |name: &'static str| {
            self.ebpf
                .take_map(name)
                .ok_or_else(|| LoadError::MissingItem(format!("map {name}")))
        };
        let sessions = take("HOLD_SESSIONS")?;
        let keywords = take("PASS_KEYWORDS")?;
        let all = take("HOLD_ALL")?;
        Ok(HoldFlags {
            all: Array::try_from(all).map_err(|source| LoadError::Map {
                name: "HOLD_ALL",
                source,
            })?,
            sessions: HashMap::try_from(sessions).map_err(|source| LoadError::Map {
                name: "HOLD_SESSIONS",
                source,
            })?,
            keywords: HashMap::try_from(keywords).map_err(|source| LoadError::Map {
                name: "PASS_KEYWORDS",
                source,
            })?,
        })
    }

    /// Events the kernel could not write to the ring buffer, per kind, summed over CPUs.
    pub fn drops(&self) -> Result<Vec<(EventKind, u64)>, LoadError> {
        let map = self
            .ebpf
            .map("DROPS")
            .ok_or_else(|| LoadError::MissingItem("map DROPS".into()))?;
        let array = PerCpuArray::<_, u64>::try_from(map).map_err(|source| LoadError::Map {
            name: "DROPS",
            source,
        })?;
        let mut out = Vec::with_capacity(DROP_SLOTS as usize);
        for (slot, kind) in EventKind::ALL.iter().enumerate() {
            let values = array
                .get(&(slot as u32), 0)
                .map_err(|source| LoadError::Map {
                    name: "DROPS",
                    source,
                })?;
            out.push((*kind, values.iter().sum()));
        }
        Ok(out)
    }

    fn hash_map<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, LoadError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or_else(|| LoadError::MissingItem(format!("map {name}")))?;
        HashMap::try_from(map).map_err(|source| LoadError::Map { name, source })
    }
}

/// The kernel's hold switches: whether holds are on, which backends are flagged and which
/// plain statement kinds each runs without a stop.
pub struct HoldFlags {
    all: Array<MapData, u32>,
    sessions: HashMap<MapData, u32, u32>,
    keywords: HashMap<MapData, [u8; KEYWORD_LEN], u32>,
}

impl HoldFlags {
    /// Names the plain kinds: the statements starting with `keywords[i]` are kind `i`, bit
    /// `1 << i` of pass masks (upper-cased; at most 16; ones longer than the kernel's key
    /// are skipped with a warning, so they always stop).
    pub fn set_kinds(&mut self, keywords: &[&str]) -> Result<(), LoadError> {
        let mut want = std::collections::HashMap::new();
        for (i, word) in keywords.iter().enumerate().take(16) {
            let bytes = word.as_bytes();
            if bytes.is_empty() || bytes.len() >= KEYWORD_LEN {
                warn!(
                    keyword = word,
                    "keyword too long for the kernel pre-screen: its statements stop"
                );
                continue;
            }
            let mut key = [0u8; KEYWORD_LEN];
            key[..bytes.len()].copy_from_slice(&bytes.to_ascii_uppercase());
            want.insert(key, 1u32 << i);
        }
        replace_entries(&mut self.keywords, &want, "PASS_KEYWORDS")
    }

    /// Turns holds on or off: while on, the kernel flags every new session of a watched
    /// cluster as soon as it is ready (no race with its first statement), and again when it
    /// changes its `application_name`, with `default_mask` until [`HoldFlags::set`] judges it.
    pub fn switch(&mut self, on: bool, default_mask: u32) -> Result<(), LoadError> {
        let map = |source| LoadError::Map {
            name: "HOLD_ALL",
            source,
        };
        // The mask first: a session flagged as soon as holds are on gets the new one.
        self.all.set(1, default_mask, 0).map_err(map)?;
        self.all.set(0, u32::from(on), 0).map_err(map)
    }

    /// Clears a backend's flag.
    pub fn unflag(&mut self, pid: u32) {
        let _ = self.sessions.remove(&pid);
    }

    /// Sets a backend's `HOLD_SESSIONS` value (`HOLD_EXEMPT`, `HOLD_PASS_ALL` or a pass
    /// mask).
    pub fn set(&mut self, pid: u32, flags: u32) -> Result<(), LoadError> {
        self.sessions
            .insert(pid, flags, 0)
            .map_err(|source| LoadError::Map {
                name: "HOLD_SESSIONS",
                source,
            })
    }
}

/// The kernel's block maps the agent keeps current while it runs.
pub struct BlockMaps {
    local_addrs: HashMap<MapData, [u8; 16], u8>,
    allow_cgroups: HashMap<MapData, u64, u8>,
}

impl BlockMaps {
    /// Makes `LOCAL_ADDRS` hold exactly `addrs` (IPv6, IPv4 mapped).
    pub fn set_local_addrs(&mut self, addrs: &HashSet<[u8; 16]>) -> Result<(), LoadError> {
        replace_set(&mut self.local_addrs, addrs, "LOCAL_ADDRS")
    }

    /// Makes `ALLOW_CGROUPS` hold exactly `ids`.
    pub fn set_allowed_cgroups(&mut self, ids: &HashSet<u64>) -> Result<(), LoadError> {
        replace_set(&mut self.allow_cgroups, ids, "ALLOW_CGROUPS")
    }
}

/// Makes the keys of `map` exactly `want` (value 1).
fn replace_set<K: aya::Pod + Eq + std::hash::Hash>(
    map: &mut HashMap<MapData, K, u8>,
    want: &HashSet<K>,
    name: &'static str,
) -> Result<(), LoadError> {
    let want: std::collections::HashMap<K, u8> = want.iter().map(|k| (*k, 1)).collect();
    replace_entries(map, &want, name)
}

/// Makes `map` hold exactly `want`: removes other keys, writes only entries that are missing
/// or differ.
fn replace_entries<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod + PartialEq>(
    map: &mut HashMap<MapData, K, V>,
    want: &std::collections::HashMap<K, V>,
    name: &'static str,
) -> Result<(), LoadError> {
    let have: std::collections::HashMap<K, V> = map.iter().filter_map(Result::ok).collect();
    for key in have.keys().filter(|k| !want.contains_key(*k)) {
        let _ = map.remove(key);
    }
    for (key, value) in want {
        if have.get(key) != Some(value) {
            map.insert(*key, *value, 0)
                .map_err(|source| LoadError::Map { name, source })?;
        }
    }
    Ok(())
}

/// The cookie of this process's network namespace (`SO_NETNS_COOKIE`, Linux 5.14+).
fn own_netns_cookie() -> std::io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt into a live u64 with its length.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// A socket path as a NUL-padded map key (`None` when it does not fit).
fn path_key(path: &Path) -> Option<[u8; UNIX_PATH_LEN]> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.len() >= UNIX_PATH_LEN {
        return None;
    }
    let mut key = [0u8; UNIX_PATH_LEN];
    key[..bytes.len()].copy_from_slice(bytes);
    Some(key)
}

/// Attaches each (program, symbol) uprobe to `binary`.
fn attach_symbols(
    ebpf: &mut Ebpf,
    binary: &Path,
    probes: &[(&str, &str)],
) -> Result<(), LoadError> {
    for &(program, symbol) in probes {
        let prog: &mut UProbe = program_mut(ebpf, program)?;
        prog.attach(symbol, binary, UProbeScope::AllProcesses)
            .map_err(|source| LoadError::Program {
                what: format!(
                    "attaching {program} to {symbol} in {} (is it a PostgreSQL server binary that exports {symbol}?)",
                    binary.display()
                ),
                source,
            })?;
    }
    Ok(())
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| LoadError::MissingItem(format!("program {name}")))?;
    debug!(name, "program");
    prog.try_into().map_err(|source| LoadError::Program {
        what: format!("program {name} has an unexpected type"),
        source,
    })
}
