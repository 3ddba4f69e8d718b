//! `AuditLog`: the append side of the log. `append` gives the event its seq under a short
//! lock and queues it (so it returns at once); the writer thread ([`super::writer`]) seals,
//! writes and fsyncs.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::AuditError;
use super::config::AuditConfig;
use super::event::{AuditEvent, Extra};
use super::key::HostKey;
use super::resume::resume;
use super::shaped::Body;
use super::writer::{Msg, Writer, to_payload};

/// Seq assignment and checkpoint scheduling, shared by appenders and the writer thread.
/// Messages are queued under this lock, so queue order is seq order.
pub(super) struct Sequencer {
    next_seq: u64,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    checkpoint_every: u64,
    tx: SyncSender<Msg>,
}

impl Sequencer {
    fn push(&mut self, body: Body) -> Result<u64, AuditError> {
        let seq = self.next_seq;
        self.tx
            .send(Msg::Event {
                seq,
                at: SystemTime::now(),
                body,
            })
            .map_err(|_| AuditError::WriterStopped)?;
        self.next_seq += 1;
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.checkpoint_every {
            self.checkpoint("periodic", Extra::new())?;
        }
        Ok(seq)
    }

    fn checkpoint(&mut self, reason: &'static str, extra: Extra) -> Result<u64, AuditError> {
        let seq = self.next_seq;
        self.tx
            .send(Msg::Checkpoint { seq, reason, extra })
            .map_err(|_| AuditError::WriterStopped)?;
        self.next_seq += 1;
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        Ok(seq)
    }

    /// Whether a timed checkpoint is due.
    pub(super) fn checkpoint_due(&self, interval: Duration) -> bool {
        self.since_checkpoint > 0 && self.last_checkpoint.elapsed() >= interval
    }

    /// Reserves the next seq for a checkpoint the writer writes itself.
    pub(super) fn reserve_checkpoint(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        seq
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
    sequencer: Arc<Mutex<Sequencer>>,
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
        let sequencer = Arc::new(Mutex::new(Sequencer {
            next_seq: resumed.tip.seq + 1,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            checkpoint_every: config.checkpoint_every_records,
            tx: tx.clone(),
        }));
        let writer = Writer::new(
            &config,
            (host.clone(), key, resumed.tip.clone()),
            resumed.current.clone(),
            rx,
            synced_tx,
        )?;
        let handle = {
            let sequencer = Arc::clone(&sequencer);
            std::thread::Builder::new()
                .name("dbward-audit".into())
                .spawn(move || writer.run(&sequencer))
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
            sequencer,
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
        self.lock()?.push(Body::Payload(payload))
    }

    /// Appends a record body, e.g. one prepared where the event was made (see
    /// [`super::shaped`]): the fast path for the agent's event stream. Like
    /// [`AuditLog::append`].
    pub fn append_record(&self, body: Body) -> Result<u64, AuditError> {
        match body.record_type() {
            Some("checkpoint") => return Err(AuditError::ReservedType("checkpoint")),
            Some(_) => {}
            None => return Err(AuditError::Encode("a record payload needs a `type`".into())),
        }
        self.lock()?.push(body)
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

    fn lock(&self) -> Result<MutexGuard<'_, Sequencer>, AuditError> {
        self.sequencer.lock().map_err(|_| AuditError::WriterStopped)
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
