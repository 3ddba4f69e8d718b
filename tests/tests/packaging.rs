//! Installing dbward on a DB host: the systemd units pass `systemd-analyze verify` and keep
//! a low exposure score, the agent works as an unprivileged user with only the unit's
//! capabilities, and the `.deb` packages install, keep a modified configuration
//! across an upgrade and a removal, and purge cleanly, without starting any service.
//!
//! The packages come from `$DBWARD_DEB_DIR` (set by `cargo xtask test`, which builds them
//! first with `cargo xtask deb`), else from `target/debian` as the last `cargo xtask deb`
//! left them (the newest of each).

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use dbward_e2e::agent::{dbward_bin, shipped_policies};
use dbward_e2e::pg::Cluster;
use dbward_e2e::{require_root, wait_for};

/// The agent unit's exposure must stay in systemd's "OK" band with margin; it is 4.0 with
/// CAP_SYS_ADMIN (which the uprobes need), so anything that widens the sandbox fails this.
const AGENT_MAX_EXPOSURE: f64 = 4.5;
/// The approver has no capabilities and a syscall filter.
const APPROVER_MAX_EXPOSURE: f64 = 2.0;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn output(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

/// Runs a command that must succeed; returns stdout and stderr together.
fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = output(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{text}",
        out.status
    );
    text
}

/// Copies `packaging/<unit>` into `dir` with `/usr/bin/<binary>` pointing at the workspace's
/// build, so `systemd-analyze` can check the commands without the package installed.
fn unit_with_built_binaries(dir: &Path, unit: &str) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("packaging").join(unit))
        .unwrap_or_else(|e| panic!("packaging/{unit}: {e}"));
    let agent = dbward_bin();
    let approver = agent.with_file_name("dbward-approver");
    assert!(
        approver.exists(),
        "{} does not exist: build it (`cargo build -p dbward-approver`)",
        approver.display()
    );
    let text = text
        .replace("/usr/bin/dbward-approver", &approver.display().to_string())
        .replace("/usr/bin/dbward ", &format!("{} ", agent.display()));
    let path = dir.join(unit);
    std::fs::write(&path, text).expect("write unit copy");
    path
}

fn exposure(unit: &Path) -> f64 {
    let text = ok(Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(unit));
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    println!("{}: {}", unit.display(), line.trim());
    line.split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"))
}

#[test]
fn unit_files_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    for unit in ["dbward.service", "dbward-approver.service"] {
        let path = unit_with_built_binaries(dir.path(), unit);
        let out = output(Command::new("systemd-analyze").arg("verify").arg(&path));
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "systemd-analyze verify {unit}:\n{text}"
        );
    }
}

#[test]
fn units_keep_a_low_exposure_score() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = exposure(&unit_with_built_binaries(dir.path(), "dbward.service"));
    assert!(
        agent < AGENT_MAX_EXPOSURE,
        "dbward.service exposure {agent} ≥ {AGENT_MAX_EXPOSURE}"
    );
    let approver = exposure(&unit_with_built_binaries(
        dir.path(),
        "dbward-approver.service",
    ));
    assert!(
        approver < APPROVER_MAX_EXPOSURE,
        "dbward-approver.service exposure {approver} ≥ {APPROVER_MAX_EXPOSURE}"
    );
}

/// The two packages, `(agent, approver)`.
fn packages() -> (PathBuf, PathBuf) {
    let dir = std::env::var_os("DBWARD_DEB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debian"));
    let find = |prefix: &str| {
        std::fs::read_dir(&dir)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb"))
            })
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.mtime()).unwrap_or(0))
            .unwrap_or_else(|| {
                panic!(
                    "no {prefix}*.deb in {}: run `cargo xtask deb` (or `cargo xtask test`), or set DBWARD_DEB_DIR",
                    dir.display()
                )
            })
    };
    (find("dbward_"), find("dbward-approver_"))
}

fn installed(package: &str) -> Option<String> {
    let out = output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", package]));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|status| !status.is_empty() && status != "un")
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").args(["-f"]).arg(deb).arg(name))
        .trim()
        .to_owned()
}

/// A copy of `deb` with a higher version and, if `conffile_change` is set, a changed
/// `/etc/dbward/agent.toml`: what the next release looks like to dpkg.
fn next_release(deb: &Path, dir: &Path, conffile_change: Option<&str>) -> PathBuf {
    let tree = dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    ok(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let version = field(deb, "Version");
    let text = std::fs::read_to_string(&control).expect("read control");
    std::fs::write(
        &control,
        text.replace(
            &format!("Version: {version}"),
            &format!("Version: {version}+next"),
        ),
    )
    .expect("write control");
    if let Some(line) = conffile_change {
        let conf = tree.join("etc/dbward/agent.toml");
        let text = std::fs::read_to_string(&conf).expect("read packaged agent.toml");
        std::fs::write(&conf, format!("{line}\n{text}")).expect("write packaged agent.toml");
        let sums = tree.join("DEBIAN/md5sums");
        let _ = std::fs::remove_file(&sums);
    }
    let out = dir.join(format!(
        "next-{}",
        deb.file_name().and_then(|n| n.to_str()).unwrap_or("x.deb")
    ));
    ok(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out));
    out
}

/// The agent's state directory, and the audit log in it (created by the postinst).
const STATE_DIR: &str = "/var/lib/dbward";
const AUDIT_DIR: &str = "/var/lib/dbward/audit";

/// Owner, group and mode of a path, to put back what the package's postinst changed.
type Ownership = (u32, u32, u32);

fn ownership(path: &str) -> Option<Ownership> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.uid(), m.gid(), m.mode() & 0o7777))
}

/// Leaves the machine as it was: purges the packages, and removes or restores what the
/// packages' scripts made or changed (the user, `/var/lib/dbward` and its `audit`).
struct Cleanup {
    user_existed: bool,
    state: Option<Ownership>,
    audit: Option<Ownership>,
}

impl Cleanup {
    fn record() -> Self {
        Self {
            user_existed: output(Command::new("getent").args(["passwd", "dbward"]))
                .status
                .success(),
            state: ownership(STATE_DIR),
            audit: ownership(AUDIT_DIR),
        }
    }
}

fn restore(path: &str, (uid, gid, mode): Ownership) {
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode));
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = output(Command::new("dpkg").args(["-P", "dbward", "dbward-approver"]));
        match self.audit {
            Some(before) => restore(AUDIT_DIR, before),
            None => {
                let _ = std::fs::remove_dir(AUDIT_DIR);
            }
        }
        match self.state {
            Some(before) => restore(STATE_DIR, before),
            None => {
                let _ = std::fs::remove_dir(STATE_DIR);
            }
        }
        if !self.user_existed {
            let _ = output(Command::new("userdel").arg("dbward"));
            let _ = output(Command::new("groupdel").arg("dbward"));
        }
    }
}

fn running_from(binary: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == Path::new(binary))
        })
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn packages_install_upgrade_keep_modified_config_and_purge() {
    require_root();
    let (agent_deb, approver_deb) = packages();
    for package in ["dbward", "dbward-approver"] {
        assert!(
            installed(package).is_none(),
            "{package} is already installed on this machine ({:?}); the test would replace it",
            installed(package)
        );
    }
    assert!(
        !Path::new("/run/systemd/system").exists() || Path::new("/usr/sbin/policy-rc.d").exists(),
        "systemd runs here and no /usr/sbin/policy-rc.d forbids starting services: the test would start dbward"
    );
    let _cleanup = Cleanup::record();
    let dir = tempfile::tempdir().expect("temp dir");

    // Fresh install: binaries, units, configuration, user and state directory; no service runs.
    ok(Command::new("dpkg")
        .arg("-i")
        .arg(&agent_deb)
        .arg(&approver_deb));
    assert_eq!(installed("dbward").as_deref(), Some("ii"));
    assert_eq!(installed("dbward-approver").as_deref(), Some("ii"));
    for unit in ["dbward.service", "dbward-approver.service"] {
        let path = format!("/usr/lib/systemd/system/{unit}");
        let out = output(Command::new("systemd-analyze").args(["verify", &path]));
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "installed {unit}:\n{text}"
        );
    }
    let conffiles = ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "dbward"]));
    for expected in [
        "/etc/dbward/agent.toml",
        "/etc/dbward/policies/20-core.yaml",
    ] {
        assert!(
            conffiles.contains(expected),
            "{expected} not a conffile:\n{conffiles}"
        );
    }
    let conf = std::fs::metadata("/etc/dbward/agent.toml").expect("agent.toml installed");
    assert_eq!(conf.mode() & 0o777, 0o640, "agent.toml may hold tokens");
    let state = std::fs::metadata(AUDIT_DIR).expect("audit directory created");
    let dbward_uid: u32 = ok(Command::new("id").args(["-u", "dbward"]))
        .trim()
        .parse()
        .expect("dbward uid");
    assert_eq!(
        state.uid(),
        dbward_uid,
        "the agent (User=dbward) writes the audit log"
    );
    assert_eq!(
        conf.gid(),
        state.gid(),
        "agent.toml is readable by group dbward"
    );
    for (page, subcommands) in [
        (
            "dbward",
            &[
                "run",
                "tail",
                "status",
                "policy",
                "audit",
                "config",
                "approvals",
                "held",
            ][..],
        ),
        ("dbward-approver", &["run", "check", "pubkey"][..]),
    ] {
        let text = ok(Command::new("zcat").arg(format!("/usr/share/man/man1/{page}.1.gz")));
        assert!(
            text.contains(&format!(".TH {page} 1")),
            "{page}.1: not a man page:\n{text}"
        );
        for sub in subcommands {
            assert!(
                text.contains(&format!("{}\\-{sub}(1)", page.replace('-', "\\-"))),
                "{page}.1 does not mention `{sub}`:\n{text}"
            );
            assert!(
                Path::new(&format!("/usr/share/man/man1/{page}-{sub}.1.gz")).exists(),
                "no man page for `{page} {sub}`"
            );
        }
    }
    let check = ok(Command::new("/usr/bin/dbward").args(["config", "check"]));
    assert!(check.contains("config OK"), "{check}");
    ok(Command::new("/usr/bin/dbward").args(["policy", "check"]));
    ok(Command::new("/usr/bin/dbward-approver").arg("check"));
    assert!(
        running_from("/usr/bin/dbward").is_empty(),
        "dbward was started"
    );
    assert!(
        running_from("/usr/bin/dbward-approver").is_empty(),
        "dbward-approver was started"
    );

    // The operator edits the configuration, then upgrades twice: once with the shipped
    // file unchanged (kept silently), once with it changed (kept, new one beside it).
    let edited = read("/etc/dbward/agent.toml").replace("#host = \"db1\"", "host = \"edited\"");
    std::fs::write("/etc/dbward/agent.toml", &edited).expect("edit agent.toml");
    let same_conf = next_release(&agent_deb, dir.path(), None);
    ok(Command::new("dpkg").arg("-i").arg(&same_conf));
    assert_eq!(
        read("/etc/dbward/agent.toml"),
        edited,
        "upgrade replaced the edited file"
    );
    let version = ok(Command::new("dpkg-query").args(["-W", "-f=${Version}", "dbward"]));
    assert!(version.ends_with("+next"), "not upgraded: {version}");
    let changed_conf = next_release(&same_conf, dir.path(), Some("# changed upstream"));
    ok(Command::new("dpkg")
        .args(["-i", "--force-confold"])
        .arg(&changed_conf));
    assert_eq!(
        read("/etc/dbward/agent.toml"),
        edited,
        "upgrade replaced the edited file"
    );
    assert!(
        read("/etc/dbward/agent.toml.dpkg-dist").starts_with("# changed upstream"),
        "the new shipped file is not beside the kept one"
    );
    assert!(
        running_from("/usr/bin/dbward").is_empty(),
        "the upgrade started dbward"
    );

    // Removal keeps the configuration; purge removes it and keeps the audit log.
    ok(Command::new("dpkg").args(["-r", "dbward", "dbward-approver"]));
    assert_eq!(installed("dbward").as_deref(), Some("rc"));
    assert!(!Path::new("/usr/bin/dbward").exists());
    assert_eq!(
        read("/etc/dbward/agent.toml"),
        edited,
        "removal lost the configuration"
    );
    ok(Command::new("dpkg").args(["-P", "dbward", "dbward-approver"]));
    assert_eq!(installed("dbward"), None);
    assert_eq!(installed("dbward-approver"), None);
    assert!(
        !Path::new("/etc/dbward/agent.toml").exists(),
        "purge kept agent.toml"
    );
    assert!(
        !Path::new("/etc/dbward/approver.toml").exists(),
        "purge kept approver.toml"
    );
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/dbward.service").exists(),
        "purge left the unit enabled"
    );
    assert!(
        Path::new("/var/lib/dbward/audit").is_dir(),
        "purge deleted the audit log"
    );
}

/// `CAP_BPF CAP_PERFMON …` of the agent unit's `AmbientCapabilities=`, as setpriv names them.
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(workspace().join("packaging/dbward.service"))
        .expect("packaging/dbward.service");
    unit.lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the agent unit sets AmbientCapabilities=")
        .split_whitespace()
        .map(|cap| cap.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

#[test]
fn agent_captures_statements_with_only_the_units_capabilities() {
    require_root();
    let caps: Vec<String> = unit_capabilities()
        .iter()
        .map(|c| format!("+{c}"))
        .collect();
    let caps = caps.join(",");
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let nobody = 65534;
    std::os::unix::fs::chown(dir.path(), Some(nobody), Some(nobody)).expect("chown temp dir");
    let stderr = std::fs::File::create(dir.path().join("agent.log")).expect("agent log");
    let mut agent = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg("--")
        .arg(dbward_bin())
        .args(["run", "--pid", &cluster.pid.to_string(), "--policy"])
        .arg(shipped_policies())
        .arg("--audit-dir")
        .arg(dir.path().join("audit"))
        .arg("--socket")
        .arg(dir.path().join("agent.sock"))
        .arg("--stdout")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start dbward under setpriv");
    let stdout = agent.stdout.take().expect("agent stdout");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().expect("lines lock").push(line);
            }
        })
    };
    let seen = |needle: &str| {
        lines
            .lock()
            .expect("lines lock")
            .iter()
            .any(|l| l.contains(needle))
    };
    let attached = wait_for(Duration::from_secs(30), || {
        seen("cluster_attached").then_some(())
    });
    let marker = "SELECT 'unit capabilities suffice'";
    if attached.is_some() {
        cluster.psql(&cluster.tcp_url("postgres", "postgres"), &["-c", marker]);
    }
    let captured = attached.and_then(|()| {
        wait_for(Duration::from_secs(20), || {
            seen("unit capabilities suffice").then_some(())
        })
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();
    let _ = reader.join();
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    assert!(
        captured.is_some(),
        "as user nobody with only {caps}, the agent did not capture `{marker}` (attached: {}):\n{log}",
        attached.is_some()
    );
}
