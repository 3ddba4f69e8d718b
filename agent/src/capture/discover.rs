//! Finds PostgreSQL postmasters and their backends in `/proc`, and reads each cluster's
//! `postmaster.pid` for its port and socket directory.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A running PostgreSQL cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Postmaster {
    /// Postmaster pid.
    pub pid: u32,
    /// `/proc/<pid>/exe`, usable as a uprobe target even for binaries in containers.
    pub exe_link: PathBuf,
    /// The binary's path as the process sees it.
    pub exe: PathBuf,
    /// (device, inode) of the binary: uprobes bind to an inode.
    pub binary_id: (u64, u64),
    /// Data directory (the postmaster's working directory).
    pub data_dir: Option<PathBuf>,
    /// TCP port from `postmaster.pid`.
    pub port: Option<u16>,
    /// Unix socket path `<dir>/.s.PGSQL.<port>` from `postmaster.pid`.
    pub socket: Option<PathBuf>,
}

/// A process of a cluster found at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingBackend {
    /// Backend pid.
    pub pid: u32,
    /// Its postmaster.
    pub postmaster: u32,
    /// Fields parsed from the process title, when it is a client backend.
    pub title: Option<BackendTitle>,
}

/// What PostgreSQL's process title says about a client backend:
/// `postgres: [cluster: ]user database host(port) state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendTitle {
    /// Role.
    pub user: String,
    /// Database.
    pub database: String,
    /// `[local]`, an address, or `address(port)`.
    pub client: String,
}

/// Names of server binaries.
fn is_server_name(name: &str) -> bool {
    name == "postgres" || name == "postmaster"
}

fn exe_of(pid: u32) -> Option<(PathBuf, (u64, u64))> {
    let link = PathBuf::from(format!("/proc/{pid}/exe"));
    let exe = fs::read_link(&link).ok()?;
    let name = exe.file_name()?.to_str()?;
    if !is_server_name(name) {
        return None;
    }
    let meta = fs::metadata(&link).ok()?;
    Some((exe, (meta.dev(), meta.ino())))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Inspects one pid: `Some` when it is a postmaster (a server process whose parent runs a
/// different binary).
pub fn postmaster(pid: u32) -> Option<Postmaster> {
    let (exe, binary_id) = exe_of(pid)?;
    if let Some(parent) = parent_of(pid)
        && exe_of(parent).is_some_and(|(_, id)| id == binary_id)
    {
        return None;
    }
    let data_dir = fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let (port, socket) = data_dir
        .as_deref()
        .and_then(|dir| fs::read_to_string(dir.join("postmaster.pid")).ok())
        .map(|text| parse_pid_file(&text))
        .unwrap_or((None, None));
    Some(Postmaster {
        pid,
        exe_link: PathBuf::from(format!("/proc/{pid}/exe")),
        exe,
        binary_id,
        data_dir,
        port,
        socket,
    })
}

/// Port and socket path from `postmaster.pid` (line 4: port, line 5: socket directory).
pub fn parse_pid_file(text: &str) -> (Option<u16>, Option<PathBuf>) {
    let lines: Vec<&str> = text.lines().collect();
    let port = lines.get(3).and_then(|l| l.trim().parse::<u16>().ok());
    let socket = match (lines.get(4).map(|l| l.trim()), port) {
        (Some(dir), Some(port)) if !dir.is_empty() => {
            Some(Path::new(dir).join(format!(".s.PGSQL.{port}")))
        }
        _ => None,
    };
    (port, socket)
}

/// Parses a backend's process title (`/proc/<pid>/cmdline`).
pub fn parse_title(cmdline: &str) -> Option<BackendTitle> {
    let title = cmdline.trim_end_matches('\0').replace('\0', " ");
    let rest = title.strip_prefix("postgres: ")?;
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    // Debian's cluster_name prefix: "15/main:".
    if words.first().is_some_and(|w| w.ends_with(':')) {
        words.remove(0);
    }
    match words.as_slice() {
        [user, database, client, ..]
            if client.starts_with('[')
                || client.contains('(')
                || client.contains('.')
                || client.contains(':') =>
        {
            Some(BackendTitle {
                user: (*user).to_owned(),
                database: (*database).to_owned(),
                client: (*client).to_owned(),
            })
        }
        _ => None,
    }
}

/// A running MariaDB server (`mariadbd`): one process serving every session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MariadbServer {
    /// Server pid.
    pub pid: u32,
    /// `/proc/<pid>/exe`, usable as a uprobe target even for binaries in containers.
    pub exe_link: PathBuf,
    /// The binary's path as the process sees it.
    pub exe: PathBuf,
    /// TCP ports it listens on.
    pub ports: Vec<u16>,
    /// Unix socket paths it listens on.
    pub sockets: Vec<PathBuf>,
}

/// Inspects one pid: `Some` when it runs a binary named like a MariaDB server.
pub fn mariadb_server(pid: u32) -> Option<MariadbServer> {
    let link = PathBuf::from(format!("/proc/{pid}/exe"));
    let exe = fs::read_link(&link).ok()?;
    if !super::mariadb::is_server_name(exe.file_name()?.to_str()?) {
        return None;
    }
    let (ports, sockets) = listening(pid);
    Some(MariadbServer {
        pid,
        exe_link: link,
        exe,
        ports,
        sockets,
    })
}

/// Every MariaDB server on the host.
pub fn scan_mariadb() -> Vec<MariadbServer> {
    all_pids().filter_map(mariadb_server).collect()
}

/// The TCP ports and unix socket paths process `pid` listens on (through its descriptors
/// and its network namespace's socket tables).
fn listening(pid: u32) -> (Vec<u16>, Vec<PathBuf>) {
    let inodes: std::collections::HashSet<u64> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let target = fs::read_link(e.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        ports.extend(listening_tcp_ports(&text, &inodes));
    }
    ports.sort_unstable();
    ports.dedup();
    let text = fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    (ports, listening_unix_paths(&text, &inodes))
}

/// Ports of the listening sockets among `inodes` in a `/proc/net/tcp{,6}` table.
pub fn listening_tcp_ports(table: &str, inodes: &std::collections::HashSet<u64>) -> Vec<u16> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != LISTEN || !inodes.contains(&inode.parse().ok()?) {
                return None;
            }
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

/// Paths of the listening sockets among `inodes` in a `/proc/net/unix` table.
pub fn listening_unix_paths(table: &str, inodes: &std::collections::HashSet<u64>) -> Vec<PathBuf> {
    /// `__SO_ACCEPTCON`: the socket listens.
    const ACCEPTCON: u32 = 1 << 16;
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (flags, inode, path) = (fields.get(3)?, fields.get(6)?, fields.get(7)?);
            let listening = u32::from_str_radix(flags, 16).ok()? & ACCEPTCON != 0;
            (listening && inodes.contains(&inode.parse().ok()?) && path.starts_with('/'))
                .then(|| PathBuf::from(path))
        })
        .collect()
}

fn all_pids() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
}

/// Every postmaster on the host, and the children of each.
pub fn scan() -> (Vec<Postmaster>, Vec<ExistingBackend>) {
    let pids: Vec<u32> = all_pids().collect();
    let postmasters: Vec<Postmaster> = pids.iter().filter_map(|&p| postmaster(p)).collect();
    let backends = pids
        .iter()
        .filter_map(|&pid| {
            let parent = parent_of(pid)?;
            postmasters.iter().find(|pm| pm.pid == parent)?;
            let title = fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .ok()
                .and_then(|c| parse_title(&c));
            Some(ExistingBackend {
                pid,
                postmaster: parent,
                title,
            })
        })
        .collect();
    (postmasters, backends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_of_a_process_are_read_from_the_socket_tables() {
        let inodes: std::collections::HashSet<u64> = [4242, 777].into_iter().collect();
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 9999 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0CEA 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   105        0 777 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(listening_tcp_ports(tcp, &inodes), vec![3306]);
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 777 /run/mysqld/mysqld.sock
0000000000000000: 00000002 00000000 00010000 0001 01 888 /tmp/other.sock
0000000000000000: 00000003 00000000 00000000 0001 03 4242 /run/mysqld/mysqld.sock
";
        assert_eq!(
            listening_unix_paths(unix, &inodes),
            vec![PathBuf::from("/run/mysqld/mysqld.sock")]
        );
    }

    #[test]
    fn pid_file_gives_port_and_socket() {
        let text = "4242\n/var/lib/postgresql/15/main\n1700000000\n5433\n/var/run/postgresql\n*\n  5433001  12\nready   \n";
        assert_eq!(
            parse_pid_file(text),
            (
                Some(5433),
                Some(PathBuf::from("/var/run/postgresql/.s.PGSQL.5433"))
            )
        );
        assert_eq!(parse_pid_file("4242\n/x\n"), (None, None));
        assert_eq!(parse_pid_file("1\n/x\n1\n5432\n\n"), (Some(5432), None));
    }

    #[test]
    fn titles_of_client_backends_parse_and_others_do_not() {
        let t = parse_title("postgres: 15/main: alice shop 127.0.0.1(50432) idle\0").unwrap();
        assert_eq!((t.user.as_str(), t.database.as_str()), ("alice", "shop"));
        assert_eq!(t.client, "127.0.0.1(50432)");
        let t = parse_title("postgres: bob db [local] SELECT").unwrap();
        assert_eq!(t.client, "[local]");
        assert_eq!(parse_title("postgres: checkpointer "), None);
        assert_eq!(parse_title("postgres: 15/main: walwriter "), None);
        assert_eq!(
            parse_title("/usr/lib/postgresql/15/bin/postgres\0-D\0/x\0"),
            None
        );
    }
}
