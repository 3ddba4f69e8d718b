//! The audit writer thread: seals queued events into the chain (hash, link, checkpoint
//! signatures), batches lines into files, fsyncs every `fsync_interval`, rotates, applies
//! retention and publishes the last durable seq.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};

use super::canonical::Payload;
use super::config::AuditConfig;
use super::event::{AuditEvent, Extra};
use super::files::{self, AuditFile, Retention};
use super::key::HostKey;
use super::log::Sequencer;
use super::record::{Header, Tip, seal_into};
use super::shaped::Body;
use super::{AuditError, checkpoint};

/// Buffered bytes that trigger a write before the fsync tick.
const WRITE_THRESHOLD: usize = 1 << 20;

/// How long the writer sleeps between polls of the queue while records keep arriving.
const BUSY_POLL: Duration = Duration::from_millis(1);

/// What appenders send to the writer, in seq order.
pub(super) enum Msg {
    /// An event to seal as record `seq`, appended at `at`.
    Event {
        seq: u64,
        at: SystemTime,
        body: Body,
    },
    /// A checkpoint to write as record `seq`.
    Checkpoint {
        seq: u64,
        reason: &'static str,
        extra: Extra,
    },
    /// Write and fsync, then answer with the last durable seq.
    Flush(oneshot::Sender<u64>),
    /// Write, fsync and stop.
    Close,
}

/// The event as a record payload (with `type`).
pub(super) fn to_payload(event: &AuditEvent) -> Result<Payload, AuditError> {
    Payload::from_serialize(event).map_err(|e| AuditError::Encode(e.to_string()))
}

/// RFC 3339 UTC with nanoseconds, e.g. `2026-11-24T11:51:27.123456789Z`.
pub fn format_ts(at: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(at);
    // Written digit by digit: this runs for every record.
    let mut ts = [0u8; 30];
    let fields: [(u32, usize, u8); 7] = [
        (dt.year().clamp(0, 9999) as u32, 4, b'-'),
        (u32::from(u8::from(dt.month())), 2, b'-'),
        (u32::from(dt.day()), 2, b'T'),
        (u32::from(dt.hour()), 2, b':'),
        (u32::from(dt.minute()), 2, b':'),
        (u32::from(dt.second()), 2, b'.'),
        (dt.nanosecond(), 9, b'Z'),
    ];
    let mut at = 0;
    for (value, width, separator) in fields {
        let mut v = value;
        for i in (0..width).rev() {
            ts[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        ts[at + width] = separator;
        at += width + 1;
    }
    String::from_utf8_lossy(&ts[..at]).into_owned()
}

struct Current {
    file: File,
    first_seq: u64,
    bytes: u64,
    opened: SystemTime,
}

pub(super) struct Writer {
    host: String,
    key: Arc<HostKey>,
    tip: Tip,
    dir: PathBuf,
    fsync_interval: Duration,
    checkpoint_interval: Duration,
    /// When the writer last wrote a checkpoint.
    last_checkpoint: Instant,
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
    pub(super) fn new(
        config: &AuditConfig,
        chain: (String, Arc<HostKey>, Tip),
        current: Option<AuditFile>,
        rx: Receiver<Msg>,
        synced_tx: watch::Sender<u64>,
    ) -> Result<Self, AuditError> {
        let (host, key, tip) = chain;
        let current = match current {
            Some(f) => Some(open_current(&f.path, f.first_seq)?),
            None => None,
        };
        let buffered_seq = *synced_tx.borrow();
        Ok(Self {
            host,
            key,
            tip,
            dir: config.dir.clone(),
            fsync_interval: config.fsync_interval(),
            checkpoint_interval: config.checkpoint_interval(),
            last_checkpoint: Instant::now(),
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

    pub(super) fn run(mut self, sequencer: &Mutex<Sequencer>) -> Result<(), AuditError> {
        let result = self.run_inner(sequencer);
        if let Err(error) = &result {
            tracing::error!(%error, dir = %self.dir.display(), "audit writer stopped; appends will fail");
        }
        result
    }

    fn run_inner(&mut self, sequencer: &Mutex<Sequencer>) -> Result<(), AuditError> {
        let mut next_sync = Instant::now() + self.fsync_interval;
        let mut waiters: Vec<oneshot::Sender<u64>> = Vec::new();
        let mut busy = false;
        loop {
            let mut closing = false;
            let until_sync = next_sync.saturating_duration_since(Instant::now());
            let first = if busy {
                // Under load, poll instead of parking: appenders then never pay for a wake-up.
                std::thread::sleep(BUSY_POLL.min(until_sync));
                self.rx.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                self.rx.recv_timeout(until_sync)
            };
            busy = first.is_ok();
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
                    Msg::Flush(reply) => waiters.push(reply),
                    Msg::Close => closing = true,
                    record => self.record(record)?,
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
            self.timed_checkpoint(sequencer)?;
        }
    }

    /// Seals and writes an `Event` or `Checkpoint` message.
    fn record(&mut self, msg: Msg) -> Result<(), AuditError> {
        let (seq, at, body) = match msg {
            Msg::Event { seq, at, body } => (seq, at, body),
            Msg::Checkpoint { seq, reason, extra } => {
                self.last_checkpoint = Instant::now();
                let cp =
                    checkpoint::make(self.key.signing_key(), &self.host, &self.tip, reason, extra);
                (
                    seq,
                    SystemTime::now(),
                    Body::Payload(to_payload(&AuditEvent::Checkpoint(cp))?),
                )
            }
            Msg::Flush(_) | Msg::Close => return Ok(()),
        };
        if seq != self.tip.seq + 1 {
            return Err(AuditError::Sequence {
                expected: self.tip.seq + 1,
                found: seq,
            });
        }
        let ts = format_ts(at);
        let header = Header {
            seq,
            host: &self.host,
            ts: &ts,
            prev_hash: &self.tip.hash,
        };
        // Sealed straight into the write buffer: the record is not copied again.
        let start = self.buf.len();
        let hash = match seal_into(&header, body, &mut self.buf) {
            Ok(hash) => hash,
            Err(error) => {
                // The seq is taken: the chain gets a record saying what could not be written.
                tracing::error!(%error, seq, "cannot encode an audit record; writing an encode_error record in its place");
                self.buf.truncate(start);
                let mut payload = Payload::default();
                let _ = payload.insert("type", "encode_error");
                let _ = payload.insert("error", &error.to_string());
                seal_into(&header, Body::Payload(payload), &mut self.buf)
                    .unwrap_or_else(|_| unreachable!("a payload always writes"))
            }
        };
        self.buffered(seq, start)?;
        self.tip = Tip { seq, hash };
        Ok(())
    }

    /// A checkpoint once `checkpoint_interval` has passed with records since the last one.
    /// Uses `try_lock`: an appender holding the lock may be blocked on the full queue.
    fn timed_checkpoint(&mut self, sequencer: &Mutex<Sequencer>) -> Result<(), AuditError> {
        if self.last_checkpoint.elapsed() < self.checkpoint_interval {
            return Ok(());
        }
        let Ok(mut sequencer) = sequencer.try_lock() else {
            return Ok(());
        };
        if !sequencer.checkpoint_due(self.checkpoint_interval) {
            return Ok(());
        }
        // Everything queued before the lock was taken must be written first; nothing new can
        // be queued while we hold it, so draining then writing keeps the order.
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Flush(reply) => {
                    let synced = self.sync()?;
                    let _ = reply.send(synced);
                }
                Msg::Close => return Ok(()),
                record => self.record(record)?,
            }
        }
        let seq = sequencer.reserve_checkpoint();
        self.record(Msg::Checkpoint {
            seq,
            reason: "periodic",
            extra: Extra::new(),
        })
    }

    /// Record `seq` was sealed into `buf` from `start`: rotates first if it does not belong
    /// in the current file, and writes the buffer out once it is large.
    fn buffered(&mut self, seq: u64, start: usize) -> Result<(), AuditError> {
        let line_len = (self.buf.len() - start) as u64;
        let rotate = match &self.current {
            None => true,
            Some(c) => {
                let size = c.bytes + start as u64;
                size > 0
                    && (size + line_len > self.rotate_max_bytes
                        || c.opened
                            .elapsed()
                            .is_ok_and(|age| age >= self.rotate_max_age))
            }
        };
        if rotate {
            // The records before this one go to the current file; this one starts the next.
            let line = self.buf.split_off(start);
            self.rotate(seq)?;
            self.buf.extend_from_slice(&line);
        }
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

#[cfg(test)]
mod tests {
    use super::format_ts;
    use std::time::{Duration, SystemTime};

    #[test]
    fn timestamps_are_rfc3339_utc_with_nanoseconds() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (1_795_519_887, 123_456_789, "2026-11-24T11:31:27.123456789Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.000000007Z"),
            (
                253_402_300_799,
                999_999_999,
                "9999-12-31T23:59:59.999999999Z",
            ),
        ];
        for (secs, nanos, expected) in cases {
            let at = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
            assert_eq!(format_ts(at), expected);
            let parsed = time::OffsetDateTime::parse(
                expected,
                &time::format_description::well_known::Rfc3339,
            )
            .expect("valid RFC 3339");
            assert_eq!(SystemTime::from(parsed), at);
        }
    }
}
