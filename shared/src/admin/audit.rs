//! The audit trail of the admin plane (docs/architecture.md, "Admin plane"): every change
//! made through `/admin/` — allowed or refused — and every reload from a signal or the
//! configuration file, with who made it (the token's role, the peer address, the
//! `X-Inetsvc-Actor` the client named) and what came of it.
//!
//! A game day proves with it which remedy a trainee applied, and an operator asks it the
//! first question of an incident: what changed? Entries are kept in memory, the newest
//! [`KEPT`], numbered so that a reader can ask for what is new since it last looked; each
//! is also one log line.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Entries kept: a bound on memory however many requests arrive.
pub const KEPT: usize = 1024;

/// Longest actor name kept: it is the client's word, so it is cut and cleaned.
const ACTOR_MAX: usize = 64;

/// Who may do what on the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `admin_token`: everything, injecting and clearing faults included.
    Trainer,
    /// `admin_trainee_token`: reading, and the remedies an operator applies (live
    /// settings, reloads); never the faults.
    Trainee,
    /// Whoever can signal the process or write its configuration file.
    Operator,
}

/// One change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// Position in the trail, from 1.
    pub seq: u64,
    /// When, in seconds since 1970.
    pub time: f64,
    /// The role of the token used.
    pub role: Role,
    /// The peer address, or `SIGHUP` / `config file`.
    pub origin: String,
    /// What the client called itself (`X-Inetsvc-Actor`), cleaned; empty if nothing.
    pub actor: String,
    /// `fault.set`, `fault.clear`, `fault.clear_all`, `settings.set`, `settings.unset`,
    /// `reload`.
    pub action: &'static str,
    /// What it acted on: a fault and its parameters, `KEY=VALUE`, a key.
    pub subject: String,
    /// `ok`, or why it was refused.
    pub outcome: String,
}

impl Entry {
    /// Whether a trainee may read it: not the faults (that would hand over the answer).
    fn for_trainee(&self) -> bool {
        !self.action.starts_with("fault.")
    }
}

/// The trail, shared by the admin API and the reloader.
#[derive(Clone, Default)]
pub struct Audit(Arc<Mutex<Trail>>);

#[derive(Default)]
struct Trail {
    next: u64,
    entries: VecDeque<Entry>,
}

/// The client's self-description, cut to [`ACTOR_MAX`] characters of a safe alphabet.
pub fn clean_actor(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':'))
        .take(ACTOR_MAX)
        .collect()
}

impl Audit {
    /// Records one change and logs it.
    pub fn record(
        &self,
        role: Role,
        origin: String,
        actor: String,
        action: &'static str,
        subject: String,
        outcome: String,
    ) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut trail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        trail.next += 1;
        let seq = trail.next;
        tracing::info!(seq, role = ?role, %origin, %actor, action, %subject, %outcome, "admin change");
        if trail.entries.len() == KEPT {
            trail.entries.pop_front();
        }
        trail.entries.push_back(Entry {
            seq,
            time,
            role,
            origin,
            actor,
            action,
            subject,
            outcome,
        });
    }

    /// Records a reload that came from the process's own side (a signal, the file).
    pub fn record_local<T>(&self, origin: &str, result: &Result<T, String>) {
        let outcome = match result {
            Ok(_) => "ok".to_owned(),
            Err(reason) => reason.clone(),
        };
        self.record(
            Role::Operator,
            origin.to_owned(),
            String::new(),
            "reload",
            String::new(),
            outcome,
        );
    }

    /// The entries after `since` that `role` may read, oldest first.
    pub fn since(&self, since: u64, role: Role) -> Vec<Entry> {
        let trail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        trail
            .entries
            .iter()
            .filter(|entry| entry.seq > since)
            .filter(|entry| role != Role::Trainee || entry.for_trainee())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(audit: &Audit, action: &'static str) {
        let peer = "10.0.0.1:5000".to_owned();
        audit.record(
            Role::Trainer,
            peer,
            "t".into(),
            action,
            "x".into(),
            "ok".into(),
        );
    }

    #[test]
    fn the_trail_is_bounded_numbered_and_hides_faults_from_trainees() {
        let audit = Audit::default();
        for _ in 0..KEPT + 5 {
            change(&audit, "settings.set");
        }
        change(&audit, "fault.set");
        let all = audit.since(0, Role::Trainer);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all.first().unwrap().seq, 7, "the oldest went first");
        assert_eq!(all.last().unwrap().action, "fault.set");
        let seen = audit.since(0, Role::Trainee);
        assert_eq!(seen.len(), KEPT - 1);
        assert!(seen.iter().all(|e| e.action == "settings.set"));
        assert_eq!(audit.since(KEPT as u64 + 5, Role::Trainer).len(), 1);
    }

    #[test]
    fn actors_are_cut_and_cleaned() {
        assert_eq!(clean_actor("gameday\n<script>"), "gamedayscript");
        assert_eq!(clean_actor(&"a".repeat(500)).len(), ACTOR_MAX);
    }
}
