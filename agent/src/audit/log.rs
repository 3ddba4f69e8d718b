//! `AuditLog`: the append side of the log. Callers seal records into the chain under a lock
//! (so `append` returns the seq at once); a dedicated writer thread batches the lines into
//! files, fsyncs every `fsync_interval`, rotates, applies retention and publishes the last
//! durable seq.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::{oneshot, watch};

use super::config::AuditConfig;
use super::event::{AuditEvent, Extra};
use super::files::{self, AuditFile, Retention};
use super::key::HostKey;
use super::record::{Header, Tip, seal};
use super::resume::resume;
use super::{AuditError, checkpoint};

/// Buffered bytes that trigger a write before the fsync tick.
const WRITE_THRESHOLD: usize = 1 << 20;

enum Msg {
    Line { seq: u64, line: Vec<u8> },
    Flush(oneshot::Sender<u64>),
    Close,
}

/// The chain state shared by appenders: sealing happens under this lock so seqs, hashes and
/// channel order agree.
struct Chain {
    host: String,
    key: Arc<HostKey>,
    tip: Tip,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    checkpoint_every: u64,
    tx: SyncSender<Msg>,
}

impl Chain {
    /// Seals the next record and moves the tip to it; the caller writes or queues the line.
    fn seal_next(&mut self, payload: Map<String, Value>) -> (u64, Vec<u8>) {
        let seq = self.tip.seq + 1;
        let ts = format_ts(SystemTime::now());
        let sealed = seal(
            &Header {
                seq,
                host: &self.host,
                ts: &ts,
                prev_hash: &self.tip.hash,
            },
            payload,
        );
        self.tip = Tip {
            seq,
            hash: sealed.hash,
        };
        self.since_checkpoint += 1;
        (seq, sealed.line)
    }

    fn push(&mut self, payload: Map<String, Value>) -> Result<u64, AuditError> {
        let (seq, line) = self.seal_next(payload);
        self.tx
            .send(Msg::Line { seq, line })
            .map_err(|_| AuditError::WriterStopped)?;
        Ok(seq)
    }

    fn seal_checkpoint(
        &mut self,
        reason: &str,
        extra: Extra,
    ) -> Result<(u64, Vec<u8>), AuditError> {
        let cp = checkpoint::make(self.key.signing_key(), &self.host, &self.tip, reason, extra);
        let sealed = self.seal_next(to_payload(&AuditEvent::Checkpoint(cp))?);
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        Ok(sealed)
    }

    fn checkpoint(&mut self, reason: &str, extra: Extra) -> Result<u64, AuditError> {
        let (seq, line) = self.seal_checkpoint(reason, extra)?;
        self.tx
            .send(Msg::Line { seq, line })
            .map_err(|_| AuditError::WriterStopped)?;
        Ok(seq)
    }
}

/// What [`AuditLog::open`] needs.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The `[audit]` settings.
    pub config: AuditConfig,
    /// This host's name, used in record ids (`<host>:<seq>`).
    pub host: String,
}

/// How the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Seq of the last record found on disk (0 for a new log).
    pub resumed_after: u64,
    /// Bytes of a torn tail that were truncated.
    pub truncated_bytes: u64,
    /// Where the verifying key was written.
    pub verifying_key: PathBuf,
}

/// The local tamper-evident audit log.
pub struct AuditLog {
    chain: Arc<Mutex<Chain>>,
    flush_tx: SyncSender<Msg>,
    synced: watch::Receiver<u64>,
    writer: Mutex<Option<JoinHandle<Result<(), AuditError>>>>,
    /// Held for the log's lifetime so that a second process cannot append to the same chain.
    _lock: File,
    dir: PathBuf,
    host: String,
    report: OpenReport,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("host", &self.host)
            .finish()
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `config.dir`: loads or generates the host key, resumes
    /// the chain after the last valid record (truncating a torn tail), starts the writer
    /// thread and appends a `checkpoint` noting the start or resume.
    pub fn open(options: AuditOptions) -> Result<Self, AuditError> {
        let AuditOptions { config, host } = options;
        let problems = config.check();
        if !problems.is_empty() {
            return Err(AuditError::Config(problems.join("; ")));
        }
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(|source| AuditError::Io {
            path: dir.clone(),
            source,
        })?;
        let lock = lock_dir(&dir)?;
        let key = Arc::new(HostKey::load_or_generate(&config.key_file).map_err(AuditError::Key)?);
        let verifying_key = key.publish_verifying_key(&dir).map_err(AuditError::Key)?;
        let resumed = resume(&dir).map_err(AuditError::Resume)?;
        let (tx, rx) = sync_channel(config.queue_capacity);
        let (synced_tx, synced) = watch::channel(resumed.tip.seq);
        let chain = Arc::new(Mutex::new(Chain {
            host: host.clone(),
            key,
            tip: resumed.tip.clone(),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            checkpoint_every: config.checkpoint_every_records,
            tx: tx.clone(),
        }));
        let writer = Writer::new(&config, resumed.current.clone(), rx, synced_tx)?;
        let handle = {
            let chain = Arc::clone(&chain);
            std::thread::Builder::new()
                .name("dbward-audit".into())
                .spawn(move || writer.run(&chain))
                .map_err(|source| AuditError::Io {
                    path: dir.clone(),
                    source,
                })?
        };
        let report = OpenReport {
            resumed_after: resumed.tip.seq,
            truncated_bytes: resumed.truncated_bytes,
            verifying_key,
        };
        let log = Self {
            chain,
            flush_tx: tx,
            synced,
            writer: Mutex::new(Some(handle)),
            _lock: lock,
            dir,
            host,
            report,
        };
        let mut extra = Extra::new();
        let reason = if resumed.tip.seq == 0 {
            "start"
        } else {
            extra.insert("resumed_after_seq".into(), Value::from(resumed.tip.seq));
            extra.insert(
                "truncated_bytes".into(),
                Value::from(resumed.truncated_bytes),
            );
            "resume"
        };
        log.lock()?.checkpoint(reason, extra)?;
        tracing::info!(dir = %log.dir.display(), resumed_after = resumed.tip.seq, truncated_bytes = resumed.truncated_bytes, "audit log open");
        Ok(log)
    }

    /// Appends an event and returns its seq. Returns as soon as the record is sealed into the
    /// chain and queued; blocks only while the writer's queue is full. Durability follows
    /// within `fsync_interval`, or at [`AuditLog::flush`].
    pub fn append(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        if matches!(event, AuditEvent::Checkpoint(_)) {
            return Err(AuditError::ReservedType("checkpoint"));
        }
        let payload = to_payload(event)?;
        let mut chain = self.lock()?;
        let seq = chain.push(payload)?;
        if chain.since_checkpoint >= chain.checkpoint_every {
            chain.checkpoint("periodic", Extra::new())?;
        }
        Ok(seq)
    }

    /// Writes and fsyncs everything appended so far; returns the last durable seq.
    pub async fn flush(&self) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.flush_tx
            .send(Msg::Flush(tx))
            .map_err(|_| AuditError::WriterStopped)?;
        rx.await.map_err(|_| AuditError::WriterStopped)
    }

    /// Like [`AuditLog::flush`], for threads outside an async runtime.
    pub fn flush_blocking(&self) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.flush_tx
            .send(Msg::Flush(tx))
            .map_err(|_| AuditError::WriterStopped)?;
        rx.blocking_recv().map_err(|_| AuditError::WriterStopped)
    }

    /// A receiver of the last durable (fsynced) seq; the streamer reads up to it.
    pub fn subscribe_synced(&self) -> watch::Receiver<u64> {
        self.synced.clone()
    }

    /// The directory of the audit files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host name in record ids.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// How the log was opened (resume point, truncated bytes, verifying key path).
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Writes a final `stop` checkpoint, fsyncs and stops the writer thread. Later appends fail.
    pub fn close(&self) -> Result<(), AuditError> {
        let Some(handle) = self
            .writer
            .lock()
            .map_err(|_| AuditError::WriterStopped)?
            .take()
        else {
            return Ok(());
        };
        let stopped = self.lock().and_then(|mut chain| {
            chain.checkpoint("stop", Extra::new())?;
            chain
                .tx
                .send(Msg::Close)
                .map_err(|_| AuditError::WriterStopped)
        });
        let joined = handle.join().map_err(|_| AuditError::WriterStopped)?;
        stopped.and(joined)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Chain>, AuditError> {
        self.chain.lock().map_err(|_| AuditError::WriterStopped)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(%error, dir = %self.dir.display(), "closing the audit log failed");
        }
    }
}

/// Takes an exclusive lock on `dir/.lock`; released by the kernel when the process dies.
fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| AuditError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AuditError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(AuditError::Io { path, source }),
    }
}

fn to_payload(event: &AuditEvent) -> Result<Map<String, Value>, AuditError> {
    match serde_json::to_value(event) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AuditError::Encode("event is not a JSON object".into())),
        Err(e) => Err(AuditError::Encode(e.to_string())),
    }
}

/// RFC 3339 UTC with nanoseconds, e.g. `2026-11-24T11:51:27.123456789Z`.
pub fn format_ts(at: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.nanosecond()
    )
}

struct Current {
    file: File,
    first_seq: u64,
    bytes: u64,
    opened: SystemTime,
}

struct Writer {
    dir: PathBuf,
    fsync_interval: Duration,
    checkpoint_interval: Duration,
    rotate_max_bytes: u64,
    rotate_max_age: Duration,
    retention: Retention,
    rx: Receiver<Msg>,
    current: Option<Current>,
    buf: Vec<u8>,
    buffered_seq: u64,
    synced_tx: watch::Sender<u64>,
}

impl Writer {
    fn new(
        config: &AuditConfig,
        current: Option<AuditFile>,
        rx: Receiver<Msg>,
        synced_tx: watch::Sender<u64>,
    ) -> Result<Self, AuditError> {
        let current = match current {
            Some(f) => Some(open_current(&f.path, f.first_seq)?),
            None => None,
        };
        let buffered_seq = *synced_tx.borrow();
        Ok(Self {
            dir: config.dir.clone(),
            fsync_interval: config.fsync_interval(),
            checkpoint_interval: config.checkpoint_interval(),
            rotate_max_bytes: config.rotate_max_bytes,
            rotate_max_age: config.rotate_max_age(),
            retention: Retention {
                max_files: config.retention_max_files,
                max_age: (config.retention_max_age_days > 0)
                    .then(|| Duration::from_secs(config.retention_max_age_days * 86_400)),
            },
            rx,
            current,
            buf: Vec::with_capacity(WRITE_THRESHOLD * 2),
            buffered_seq,
            synced_tx,
        })
    }

    fn run(mut self, chain: &Mutex<Chain>) -> Result<(), AuditError> {
        let result = self.run_inner(chain);
        if let Err(error) = &result {
            tracing::error!(%error, dir = %self.dir.display(), "audit writer stopped; appends will fail");
        }
        result
    }

    fn run_inner(&mut self, chain: &Mutex<Chain>) -> Result<(), AuditError> {
        let mut next_sync = Instant::now() + self.fsync_interval;
        let mut waiters: Vec<oneshot::Sender<u64>> = Vec::new();
        loop {
            let mut closing = false;
            let first = self
                .rx
                .recv_timeout(next_sync.saturating_duration_since(Instant::now()));
            let mut msg = match first {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    closing = true;
                    None
                }
            };
            while let Some(m) = msg.take() {
                match m {
                    Msg::Line { seq, line } => self.write_line(seq, &line)?,
                    Msg::Flush(reply) => waiters.push(reply),
                    Msg::Close => closing = true,
                }
                if closing || !waiters.is_empty() {
                    break;
                }
                msg = match self.rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
                        closing = true;
                        None
                    }
                };
            }
            if closing || !waiters.is_empty() || Instant::now() >= next_sync {
                let synced = self.sync()?;
                for reply in waiters.drain(..) {
                    let _ = reply.send(synced);
                }
                next_sync = Instant::now() + self.fsync_interval;
            }
            if closing {
                return Ok(());
            }
            self.timed_checkpoint(chain)?;
        }
    }

    /// A checkpoint once `checkpoint_interval` has passed with records since the last one.
    /// Uses `try_lock`: an appender holding the lock may be blocked on the full queue.
    fn timed_checkpoint(&mut self, chain: &Mutex<Chain>) -> Result<(), AuditError> {
        let Ok(mut chain) = chain.try_lock() else {
            return Ok(());
        };
        if chain.since_checkpoint == 0 || chain.last_checkpoint.elapsed() < self.checkpoint_interval
        {
            return Ok(());
        }
        // Everything queued before the lock was taken must be written first; nothing new can
        // be queued while we hold it, so draining then sealing keeps the order.
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Line { seq, line } => self.write_line(seq, &line)?,
                Msg::Flush(reply) => {
                    let synced = self.sync()?;
                    let _ = reply.send(synced);
                }
                Msg::Close => return Ok(()),
            }
        }
        let (seq, line) = chain.seal_checkpoint("periodic", Extra::new())?;
        self.write_line(seq, &line)
    }

    fn write_line(&mut self, seq: u64, line: &[u8]) -> Result<(), AuditError> {
        let rotate = match &self.current {
            None => true,
            Some(c) => {
                let size = c.bytes + self.buf.len() as u64;
                size > 0
                    && (size + line.len() as u64 > self.rotate_max_bytes
                        || c.opened
                            .elapsed()
                            .is_ok_and(|age| age >= self.rotate_max_age))
            }
        };
        if rotate {
            self.rotate(seq)?;
        }
        self.buf.extend_from_slice(line);
        self.buffered_seq = seq;
        if self.buf.len() >= WRITE_THRESHOLD {
            self.write_buffer()?;
        }
        Ok(())
    }

    fn write_buffer(&mut self) -> Result<(), AuditError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(current) = &mut self.current else {
            return Err(AuditError::WriterStopped);
        };
        let path = self.dir.join(files::file_name(current.first_seq));
        current
            .file
            .write_all(&self.buf)
            .map_err(|source| AuditError::Io { path, source })?;
        current.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn sync(&mut self) -> Result<u64, AuditError> {
        self.write_buffer()?;
        if let Some(current) = &self.current {
            current.file.sync_data().map_err(|source| AuditError::Io {
                path: self.dir.join(files::file_name(current.first_seq)),
                source,
            })?;
        }
        let synced = self.buffered_seq;
        self.synced_tx.send_if_modified(|v| {
            let changed = *v != synced;
            *v = synced;
            changed
        });
        Ok(synced)
    }

    fn rotate(&mut self, first_seq: u64) -> Result<(), AuditError> {
        if self.current.is_some() {
            self.sync()?;
        }
        let path = self.dir.join(files::file_name(first_seq));
        self.current = Some(open_current(&path, first_seq)?);
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| AuditError::Io {
                path: self.dir.clone(),
                source,
            })?;
        tracing::debug!(path = %path.display(), "audit file started");
        self.apply_retention()
    }

    fn apply_retention(&self) -> Result<(), AuditError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| AuditError::Io { path, source }
        };
        let mut listed = Vec::new();
        for f in files::list(&self.dir).map_err(io(&self.dir))? {
            let modified = fs::metadata(&f.path)
                .and_then(|m| m.modified())
                .map_err(io(&f.path))?;
            listed.push((f, modified));
        }
        for f in files::expired(&listed, self.retention, SystemTime::now()) {
            fs::remove_file(&f.path).map_err(io(&f.path))?;
            tracing::info!(path = %f.path.display(), first_seq = f.first_seq, "audit retention deleted file");
        }
        Ok(())
    }
}

fn open_current(path: &Path, first_seq: u64) -> Result<Current, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let opened = meta
        .created()
        .or_else(|_| meta.modified())
        .unwrap_or_else(|_| SystemTime::now());
    Ok(Current {
        file,
        first_seq,
        bytes: meta.len(),
        opened,
    })
}
