//! The optional arbiter: a leader key on a lease in etcd decides which node may hold the VIP and
//! be primary (design invariant 10). What the policy knows of it, as the daemon's etcd client
//! last reported.
//!
//! The client reports conservatively: `Held { valid_until }` is the time the lease is certain to
//! last as etcd counts it — the *send* time of the last refresh that etcd acknowledged, plus the
//! TTL etcd granted, minus one request timeout of margin — so the holder stops relying on the key
//! before any other node can have it. An etcd error is [`ArbiterSample::Unknown`]: never "the peer
//! holds it", never "free".

use std::time::Instant;

/// One report of the etcd client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArbiterSample {
    /// This node holds the leader key; its lease is certain to last until `valid_until`.
    Held { valid_until: Instant },
    /// etcd answered: another node holds the key (`holder` is the key's value, its node name).
    HeldByOther { holder: String },
    /// etcd answered: nobody holds the key (it expired or was released).
    Free,
    /// etcd could not be asked or did not answer in time; `reason` says what failed where.
    Unknown { reason: String },
}

/// What the policy asks of the etcd client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArbiterAction {
    /// Take the key if nobody holds it (compare-and-set on a new lease) and keep refreshing it;
    /// report every outcome as an [`ArbiterSample`]. Repeated while wanted: idempotent.
    Campaign,
    /// Give the key up at once (revoke the lease) and stop refreshing it.
    Release,
}

/// `<prefix>/sync` as the etcd client read it: the standby that the primary's daemon names as
/// synchronous (sync modes with an arbiter). Only the leader key's holder writes it (an etcd
/// transaction that compares the key is still on its lease), so a read made while *this* node
/// holds the key cannot be overtaken by the old primary: it is final for a promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRecord {
    /// It names this node: its primary waited for it, so it has every acknowledged commit.
    NamesThisNode,
    /// It names no standby ("none"): the primary commits alone, since `since_unix_ms` where known.
    NamesNone { since_unix_ms: Option<u64> },
    /// It names another node.
    NamesOther { node: String },
    /// The key does not exist: no primary has recorded a synchronous standby.
    Absent,
    /// etcd could not be asked, or the value is not one this daemon writes; `reason` says what.
    Unknown { reason: String },
}

/// What the primary writes to `<prefix>/sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRecordWrite {
    /// The pair's standby, by node name: it is listed `sync` by this primary.
    Standby,
    /// "none": this primary is about to commit alone.
    None,
}

/// Why the sync record does not let this standby promote (see [`crate::Hold::SyncRecord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordRefusal {
    /// Not read since this node took the leader key: a read from before may be stale.
    NotRead,
    /// "none": the primary committed alone (since then, where known).
    NamesNone { since_unix_ms: Option<u64> },
    /// It names another node.
    NamesOther,
    /// The key does not exist.
    Absent,
    /// etcd gave no answer to the read, or the value could not be read: unknown is not
    /// promotable.
    Unknown,
}

impl std::fmt::Display for RecordRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordRefusal::NotRead => {
                f.write_str("etcd's sync record has not been read since this node took the key")
            }
            RecordRefusal::NamesNone { .. } => {
                f.write_str("etcd's sync record names none: the primary committed alone")
            }
            RecordRefusal::NamesOther => {
                f.write_str("etcd's sync record names another node as the synchronous standby")
            }
            RecordRefusal::Absent => f.write_str(
                "etcd has no sync record: no primary recorded this node as its synchronous standby",
            ),
            RecordRefusal::Unknown => {
                f.write_str("etcd's sync record could not be read: unknown is not promotable")
            }
        }
    }
}

/// Settings, from `[arbiter]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArbiterRules {
    /// A master whose lease ran out (and no failsafe confirmation) also fences its database;
    /// otherwise it only drops the VIP.
    pub fence_on_loss: bool,
    /// Keep serving through an etcd outage while the peer confirms it is not taking over.
    pub failsafe: bool,
}

/// The arbiter as the policy knows it.
#[derive(Debug, Clone)]
pub(crate) struct Arbiter {
    pub rules: ArbiterRules,
    /// The latest report.
    pub latest: Option<ArbiterSample>,
    /// Until when the key is certainly ours (the latest `Held` report), if ever held.
    pub held_until: Option<Instant>,
    /// What was last asked of the client (to emit only changes).
    pub asked: Option<ArbiterAction>,
    /// The lease ran out under a master that was serving, and nothing confirmed the peer: the VIP
    /// went (and the database was fenced, if configured) until the key is held again.
    pub lost: bool,
    /// The latest read of the sync record.
    pub record: Option<SyncRecord>,
    /// It was read while this node held the key (after it took it): final for a promotion.
    pub record_under_key: bool,
    /// What this node wrote to the record and etcd acknowledged, while holding the key.
    pub record_written: Option<SyncRecordWrite>,
    /// A write asked for and not answered yet.
    pub record_writing: Option<SyncRecordWrite>,
    /// The latest write failed: why (with the endpoint).
    pub record_error: Option<String>,
    /// A failed write is tried again then.
    pub record_retry_at: Option<Instant>,
}

impl Arbiter {
    pub fn new(rules: ArbiterRules) -> Arbiter {
        Arbiter {
            rules,
            latest: None,
            held_until: None,
            asked: None,
            lost: false,
            record: None,
            record_under_key: false,
            record_written: None,
            record_writing: None,
            record_error: None,
            record_retry_at: None,
        }
    }

    pub fn sample(&mut self, sample: ArbiterSample, now: Instant) {
        match &sample {
            // A refresh that was in flight when the key was released (or before it was asked
            // for) is not a key held: the client no longer keeps it.
            ArbiterSample::Held { .. } if self.asked != Some(ArbiterAction::Campaign) => {}
            ArbiterSample::Held { valid_until } => {
                if !self.held(now) {
                    // A new holding: another node may have held the key (and written the
                    // record) in between. Only a read from now on counts.
                    self.record_under_key = false;
                    self.record_written = None;
                }
                self.held_until = Some(
                    self.held_until
                        .map_or(*valid_until, |t| t.max(*valid_until)),
                );
                self.lost = false;
            }
            // etcd says someone else (or nobody) holds it: whatever our estimate said, it is not
            // ours any more (released, or revoked by an operator).
            ArbiterSample::HeldByOther { .. } | ArbiterSample::Free => {
                self.held_until = None;
                self.key_gone();
            }
            // Unknown changes nothing: the lease lasts what it was granted for.
            ArbiterSample::Unknown { .. } => {}
        }
        self.latest = Some(sample);
    }

    /// The key is ours at `now`.
    pub fn held(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|t| now < t)
    }

    /// The key is not ours (any more): what was read or written under it says nothing now.
    pub fn key_gone(&mut self) {
        self.record_under_key = false;
        self.record_written = None;
    }

    /// A read of the sync record; `under_key`: the client held the key when it read it.
    pub fn record_read(&mut self, record: SyncRecord, under_key: bool, now: Instant) {
        self.record_under_key = under_key && self.held(now);
        self.record = Some(record);
    }

    /// Rule "may promote on the record" (sync modes): only a read made while holding the key,
    /// and only one that names this node. Absent, unread or unreadable is not promotable.
    pub fn record_allows_promotion(&self) -> Result<(), RecordRefusal> {
        if !self.record_under_key {
            return Err(RecordRefusal::NotRead);
        }
        match &self.record {
            Some(SyncRecord::NamesThisNode) => Ok(()),
            Some(SyncRecord::NamesNone { since_unix_ms }) => Err(RecordRefusal::NamesNone {
                since_unix_ms: *since_unix_ms,
            }),
            Some(SyncRecord::NamesOther { .. }) => Err(RecordRefusal::NamesOther),
            Some(SyncRecord::Absent) => Err(RecordRefusal::Absent),
            Some(SyncRecord::Unknown { .. }) => Err(RecordRefusal::Unknown),
            None => Err(RecordRefusal::NotRead),
        }
    }

    /// Rule "may relax now" (sync modes): the primary commits alone only once etcd acknowledged
    /// "none", written while this node held the key.
    pub fn may_relax(&self) -> bool {
        self.record_written == Some(SyncRecordWrite::None)
    }

    /// On a primary: the write to ask for now, if any, for the record to say `want`. Only while
    /// the key is ours, one at a time, not before a failed one's retry time.
    pub fn record_step(
        &mut self,
        want: Option<SyncRecordWrite>,
        now: Instant,
    ) -> Option<SyncRecordWrite> {
        let want = want?;
        if !self.held(now)
            || self.record_writing.is_some()
            || self.record_written == Some(want)
            || self.record_retry_at.is_some_and(|at| now < at)
        {
            return None;
        }
        self.record_writing = Some(want);
        Some(want)
    }

    /// The client's answer to a write.
    pub fn record_finished(
        &mut self,
        write: SyncRecordWrite,
        result: Result<(), String>,
        retry: Instant,
    ) {
        self.record_writing = None;
        match result {
            Ok(()) => {
                self.record_written = Some(write);
                self.record_error = None;
                self.record_retry_at = None;
            }
            Err(e) => {
                // Whether it was written is unknown: nothing counts as written.
                self.record_written = None;
                self.record_error = Some(e);
                self.record_retry_at = Some(retry);
            }
        }
    }
}

/// `/status`: the arbiter as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArbiterStatus {
    pub latest: Option<ArbiterSample>,
    /// The key is ours now.
    pub held: bool,
    /// Until when (when held).
    pub held_until: Option<Instant>,
    /// The lease ran out under this master and it stopped serving.
    pub lost: bool,
    /// Serving past the lease on the peer's confirmation (the failsafe).
    pub failsafe_active: bool,
    /// The latest read of `<prefix>/sync`, and whether it was made under the key.
    pub sync_record: Option<SyncRecord>,
    pub sync_record_under_key: bool,
    /// What this node wrote there (acknowledged), while it holds the key.
    pub sync_record_written: Option<SyncRecordWrite>,
    /// The latest write failed: why, with the endpoint.
    pub sync_record_error: Option<String>,
    /// The primary wants to commit alone and waits for etcd to acknowledge "none" first.
    pub relax_waits_for_record: bool,
}
