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
}

impl Arbiter {
    pub fn new(rules: ArbiterRules) -> Arbiter {
        Arbiter {
            rules,
            latest: None,
            held_until: None,
            asked: None,
            lost: false,
        }
    }

    pub fn sample(&mut self, sample: ArbiterSample) {
        match &sample {
            // A refresh that was in flight when the key was released (or before it was asked
            // for) is not a key held: the client no longer keeps it.
            ArbiterSample::Held { .. } if self.asked != Some(ArbiterAction::Campaign) => {}
            ArbiterSample::Held { valid_until } => {
                self.held_until = Some(
                    self.held_until
                        .map_or(*valid_until, |t| t.max(*valid_until)),
                );
                self.lost = false;
            }
            // etcd says someone else (or nobody) holds it: whatever our estimate said, it is not
            // ours any more (released, or revoked by an operator).
            ArbiterSample::HeldByOther { .. } | ArbiterSample::Free => self.held_until = None,
            // Unknown changes nothing: the lease lasts what it was granted for.
            ArbiterSample::Unknown { .. } => {}
        }
        self.latest = Some(sample);
    }

    /// The key is ours at `now`.
    pub fn held(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|t| now < t)
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
}
