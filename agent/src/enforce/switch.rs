//! Which backends the kernel stops, kept in line with the active policy: whether holds are
//! on (the operator allowed them and the policy can stop some statement of a session that
//! bypasses the shim), and, per session, which plain statement kinds run without a stop
//! (judged from the session's principal). Applied at start, for each new session, when a
//! session's `application_name` changes, and after every policy reload, so a rule added
//! later takes effect on sessions that are already open.

use std::collections::HashMap;

use agent_common::HOLD_EXEMPT;
use tracing::{info, warn};

use super::hold::{PLAIN_KINDS, pass_mask, session_flags};
use crate::capture::loader::{HoldFlags, LoadError};
use crate::policy::{Facts, PolicySet};

/// A live session as the switch knows it.
struct Session {
    /// `None`: the shim's own upstream session.
    facts: Option<Facts>,
}

/// The kernel's hold switches and the live sessions they apply to.
pub struct HoldSwitch {
    flags: HoldFlags,
    /// `dbward run --hold-unmediated`: the operator allows the kernel to stop backends.
    allowed: bool,
    on: bool,
    sessions: HashMap<u32, Session>,
}

impl HoldSwitch {
    /// Switches that are off until [`HoldSwitch::apply`] is called; `allowed` is whether the
    /// operator allows holds at all.
    pub fn new(flags: HoldFlags, allowed: bool) -> Result<Self, LoadError> {
        let mut flags = flags;
        let keywords: Vec<&str> = PLAIN_KINDS.iter().map(|(k, _)| *k).collect();
        flags.set_kinds(&keywords)?;
        Ok(HoldSwitch {
            flags,
            allowed,
            on: false,
            sessions: HashMap::new(),
        })
    }

    /// Whether flagged backends are being stopped.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Makes the kernel follow `policy`: holds on or off, the default pass mask for
    /// sessions not judged yet, and every live session judged again.
    pub fn apply(&mut self, policy: &PolicySet) -> Result<(), LoadError> {
        let wanted = policy.stops_unmediated();
        if wanted && !self.allowed {
            warn!(
                "the policy holds or ends statements of sessions that bypass the shim, but holds are off (dbward run --hold-unmediated): those statements are only recorded"
            );
        }
        let on = wanted && self.allowed;
        let default = if on { pass_mask(policy, None) } else { 0 };
        if on {
            // Sessions first: none runs under the previous policy's mask once holds are on.
            for (&pid, session) in &self.sessions {
                self.flags.set(pid, flags_for(policy, session))?;
            }
        }
        self.flags.switch(on, default)?;
        if !on {
            for &pid in self.sessions.keys() {
                self.flags.unflag(pid);
            }
        }
        if on != self.on {
            info!(
                on,
                sessions = self.sessions.len(),
                "kernel holds for sessions that bypass the shim"
            );
        }
        self.on = on;
        Ok(())
    }

    /// A session started (or its `application_name` changed, which may change its
    /// principal): the shim's own are never stopped (the shim decides for them), others are
    /// judged by their principal while holds are on.
    pub fn session_seen(&mut self, pid: u32, facts: Option<Facts>, policy: &PolicySet) {
        let session = Session { facts };
        if self.on
            && let Err(e) = self.flags.set(pid, flags_for(policy, &session))
        {
            warn!(pid, error = %e, "cannot flag backend for holds");
        }
        self.sessions.insert(pid, session);
    }

    /// Whether `application_name` differs from what `pid` was last judged with.
    pub fn app_changed(&self, pid: u32, application_name: Option<&str>) -> bool {
        self.sessions.get(&pid).is_some_and(|s| {
            s.facts
                .as_ref()
                .is_some_and(|f| f.application_name.as_deref() != application_name)
        })
    }

    /// A session ended.
    pub fn session_ended(&mut self, pid: u32) {
        self.sessions.remove(&pid);
    }
}

fn flags_for(policy: &PolicySet, session: &Session) -> u32 {
    session
        .facts
        .as_ref()
        .map_or(HOLD_EXEMPT, |facts| session_flags(policy, facts))
}
