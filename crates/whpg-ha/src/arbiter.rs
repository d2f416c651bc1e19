//! The optional arbiter's IO: an etcd v3 client that campaigns for, keeps and releases the
//! leader key on a lease, and reports what it found to the policy as
//! [`Input::Arbiter`](whpg_policy::Input::Arbiter) samples. The rules are the policy's
//! (`whpg_policy::policy`, invariant 10); this task only does what it is asked.
//!
//! - **Campaign**: if the key is absent, grant a lease and create the key on it in one
//!   compare-and-set transaction (`create_revision == 0`); then refresh the lease every
//!   `keepalive_interval`. A key that another node holds is left alone: it can only be taken
//!   once it expired or was released. A key holding this node's name on a live lease (an
//!   earlier run of this daemon) is adopted.
//! - **Release**: revoke the lease (the key goes with it), at once.
//! - Otherwise (and for `/status`): read the key now and then.
//! - **The sync record** (`[replication] mode` sync or sync-strict): `<prefix>/sync` holds
//!   `{"sync_standby": <node name> | null, "primary": <node>, "since_unix_ms": ...}`. It is
//!   written only on the policy's request, in a transaction that compares the leader key is still
//!   on this node's lease (so only the key's holder writes it), and read after every confirmed
//!   refresh while the key is ours (`under_key`: final, the old primary can no longer write) and
//!   with every look at the key otherwise (for `/status`).
//!
//! Every report is conservative: `Held { valid_until }` counts from the moment the refresh was
//! *sent* (etcd counts from when it arrived, later), with one request timeout of margin, and only
//! once a linearizable read after it found the key still on our lease (a leader cut off from its
//! quorum renews leases nobody else will honour, but cannot serve that read). Any error or
//! timeout is `Unknown` with the endpoints and the fix: never "the peer holds it".

use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Identity, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use whpg_policy::{ArbiterAction, ArbiterSample, Input, SyncRecord, SyncRecordWrite};

use crate::config::{Arbiter, Config, ReplicationMode};

/// How often a node that wants the key but does not hold it looks again (at most).
const CAMPAIGN_POLL: Duration = Duration::from_millis(200);
/// After it released the key, a node looks at it this often for [`AFTER_RELEASE`]: a primary
/// whose database failed but lives must see the other node take the key (and fence its database)
/// within about this, since the other promotes as soon as it holds it.
const AFTER_RELEASE_POLL: Duration = Duration::from_millis(100);
const AFTER_RELEASE: Duration = Duration::from_secs(10);

/// Where the policy's requests reach the etcd task.
#[derive(Debug, Clone)]
pub struct ArbiterHandle {
    wanted: watch::Sender<Option<ArbiterAction>>,
    records: mpsc::UnboundedSender<SyncRecordWrite>,
}

impl ArbiterHandle {
    /// Carry out `action` (idempotent: the latest one counts).
    pub fn ask(&self, action: ArbiterAction) {
        self.wanted.send_replace(Some(action));
    }

    /// Write the sync record; the answer comes back as `Input::SyncRecordWritten`.
    pub fn write_sync_record(&self, record: SyncRecordWrite) {
        // The task ends only with the daemon.
        let _ = self.records.send(record);
    }
}

/// The sync record's value, as this daemon writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncRecordValue {
    /// The standby the primary waits for; `None` ("none"): it commits alone.
    pub sync_standby: Option<String>,
    /// The primary that wrote it (the leader key's holder).
    pub primary: String,
    /// When it was written.
    pub since_unix_ms: u64,
}

impl SyncRecordValue {
    /// What the record means to node `node`; `raw` is the key's value.
    pub fn interpret(raw: &[u8], key: &str, node: &str) -> SyncRecord {
        match serde_json::from_slice::<SyncRecordValue>(raw) {
            Ok(v) => match v.sync_standby {
                Some(standby) if standby == node => SyncRecord::NamesThisNode,
                Some(standby) => SyncRecord::NamesOther { node: standby },
                None => SyncRecord::NamesNone {
                    since_unix_ms: Some(v.since_unix_ms),
                },
            },
            Err(e) => SyncRecord::Unknown {
                reason: format!(
                    "etcd's {key} holds {:?}, not a sync record this daemon writes ({e}); \
                     remove it (etcdctl del {key}) and let the primary's daemon write it again",
                    String::from_utf8_lossy(raw)
                ),
            },
        }
    }
}

/// Starts the etcd task when `[arbiter]` is configured.
pub fn spawn(config: &Config, inputs: mpsc::Sender<Input>) -> Option<ArbiterHandle> {
    let arbiter = config.arbiter.clone()?;
    let (wanted, rx) = watch::channel(None);
    let (records, records_rx) = mpsc::unbounded_channel();
    let (lease_tx, lease_rx) = watch::channel(None);
    let sync_mode = config.replication.mode != ReplicationMode::Async;
    let task = Task {
        node: config.local.name.clone(),
        peer: config.peer().map(|p| p.name.clone()),
        sync_key: sync_mode.then(|| arbiter.sync_key()),
        last_record: None,
        lease_id: lease_tx,
        key: arbiter.leader_key(),
        config: arbiter,
        inputs,
        client: None,
        endpoint: 0,
        lease: None,
        last_sent: None,
        released_at: None,
    };
    let writer = RecordWriter {
        node: task.node.clone(),
        peer: task.peer.clone(),
        leader_key: task.key.clone(),
        sync_key: task.sync_key.clone(),
        config: task.config.clone(),
        inputs: task.inputs.clone(),
        lease: lease_rx,
        client: None,
        endpoint: 0,
    };
    tokio::spawn(task.run(rx));
    tokio::spawn(writer.run(records_rx));
    Some(ArbiterHandle { wanted, records })
}

/// The lease this node holds the key on.
struct Lease {
    id: i64,
    /// The TTL etcd granted (it may raise what was asked to its minimum).
    ttl: Duration,
    /// The keep-alive stream, opened on first use and again after an error.
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// Talks to one member at a time (`endpoint`), and moves to the next after any failure: a
/// member that is down, cut off or without a leader fails while the others answer, and a
/// balanced channel would keep sending it a share of the requests.
struct Task {
    node: String,
    /// The pair's standby when this node is the primary: the name a sync record gives.
    peer: Option<String>,
    /// `<prefix>/sync`, in a sync mode.
    sync_key: Option<String>,
    /// The latest sync record reported that was read outside the key (reads under the key are
    /// all reported: each one may be the first of a new holding).
    last_record: Option<SyncRecord>,
    /// The lease the key is on, for the sync record's writer.
    lease_id: watch::Sender<Option<i64>>,
    key: String,
    config: Arbiter,
    inputs: mpsc::Sender<Input>,
    /// Connected to `config.endpoints[endpoint]`.
    client: Option<Client>,
    endpoint: usize,
    lease: Option<Lease>,
    /// The latest report other than `Held` (those are sent every time: they extend the lease).
    last_sent: Option<ArbiterSample>,
    /// When this node last gave the key up.
    released_at: Option<tokio::time::Instant>,
}

/// An etcd failure, in words, for `Unknown`.
type Failure = String;

impl Task {
    async fn run(mut self, mut wanted: watch::Receiver<Option<ArbiterAction>>) {
        info!(
            "arbiter: etcd at {}, leader key {}, lease TTL {:?}{}",
            self.config.endpoints.join(","),
            self.key,
            self.config.lease_ttl,
            self.sync_key
                .as_ref()
                .map(|k| format!(", sync record {k}"))
                .unwrap_or_default()
        );
        let mut next = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next {
                let action = *wanted.borrow_and_update();
                let pause = match action {
                    Some(ArbiterAction::Campaign) => self.campaign().await,
                    Some(ArbiterAction::Release) | None => {
                        if action.is_some() && self.lease.is_some() {
                            self.release().await;
                            self.released_at = Some(tokio::time::Instant::now());
                        }
                        self.observe().await;
                        let recently = self
                            .released_at
                            .is_some_and(|at| at.elapsed() < AFTER_RELEASE);
                        if recently {
                            AFTER_RELEASE_POLL.min(self.config.keepalive_interval)
                        } else {
                            self.config.keepalive_interval
                        }
                    }
                };
                next = tokio::time::Instant::now() + pause;
                self.lease_id
                    .send_replace(self.lease.as_ref().map(|l| l.id));
            }
            tokio::select! {
                changed = wanted.changed() => {
                    if changed.is_err() { return }
                    next = tokio::time::Instant::now();
                }
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    async fn report(&mut self, sample: ArbiterSample) {
        let held = matches!(sample, ArbiterSample::Held { .. });
        if !held && self.last_sent.as_ref() == Some(&sample) {
            return;
        }
        match &sample {
            ArbiterSample::Unknown { reason } => warn!("arbiter: {reason}"),
            other => debug!("arbiter: {other:?}"),
        }
        self.last_sent = (!held).then(|| sample.clone());
        // The daemon stopped: nothing left to tell.
        let _ = self.inputs.send(Input::Arbiter(sample)).await;
    }

    /// The member talked to now.
    fn endpoint(&self) -> &str {
        &self.config.endpoints[self.endpoint]
    }

    /// After a failure: the next member, a new connection and keep-alive stream.
    fn rotate(&mut self) {
        self.client = None;
        if let Some(lease) = &mut self.lease {
            lease.stream = None;
        }
        self.endpoint = (self.endpoint + 1) % self.config.endpoints.len().max(1);
    }

    /// `step` against each member in turn until one answers; the last failure otherwise, with
    /// how many members were tried.
    async fn each_member<T>(
        &mut self,
        mut step: impl AsyncFnMut(&mut Task) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let members = self.config.endpoints.len().max(1);
        let mut last = String::new();
        for _ in 0..members {
            match step(self).await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    last = e;
                    self.rotate();
                }
            }
        }
        Err(if members > 1 {
            format!("{last} (each of the {members} members tried)")
        } else {
            last
        })
    }

    /// One step of wanting the key; returns how long to wait before the next.
    async fn campaign(&mut self) -> Duration {
        if self.lease.is_some() {
            let sample = match self
                .each_member(async |t: &mut Task| t.refresh().await)
                .await
            {
                Ok(Some(valid_until)) => ArbiterSample::Held { valid_until },
                Ok(None) => {
                    // The lease is gone (it ran out, or an operator revoked it): ask again now.
                    self.lease = None;
                    return Duration::ZERO;
                }
                Err(reason) => ArbiterSample::Unknown { reason },
            };
            let held = matches!(sample, ArbiterSample::Held { .. });
            self.report(sample).await;
            if held {
                self.read_record(true).await;
            }
            return self.config.keepalive_interval;
        }
        let sample = match self.acquire().await {
            Ok(sample) => sample,
            Err(reason) => {
                self.rotate();
                ArbiterSample::Unknown { reason }
            }
        };
        let held = matches!(sample, ArbiterSample::Held { .. });
        self.report(sample).await;
        if held {
            // Read after the key is ours: the old primary can no longer change it.
            self.read_record(true).await;
            self.config.keepalive_interval
        } else {
            CAMPAIGN_POLL.min(self.config.keepalive_interval)
        }
    }

    async fn client(&mut self) -> Result<Client, Failure> {
        if self.client.is_none() {
            let options = self.options()?;
            let endpoint = self.endpoint().to_string();
            let client = self
                .timed("connect", Client::connect([endpoint], Some(options)))
                .await?;
            self.client = Some(client);
        }
        Ok(self.client.clone().expect("connected above"))
    }

    fn options(&self) -> Result<ConnectOptions, Failure> {
        connect_options(&self.config)
    }

    /// `what` with the configured timeout; an error says where and what to do.
    async fn timed<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        let endpoint = self.endpoint();
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!(
                "etcd {what} at {endpoint} failed: {e}; check that the member runs and reaches a \
                 quorum of the others (arbiter.endpoints), and arbiter.user/password/tls_*"
            )),
            Err(_) => Err(format!(
                "etcd {what} at {endpoint} gave no answer within {:?} (arbiter.timeout); check \
                 that the member runs and is reachable from this node",
                self.config.timeout
            )),
        }
    }

    /// Takes the key if it is free (or ours from an earlier run).
    async fn acquire(&mut self) -> Result<ArbiterSample, Failure> {
        match self.read().await? {
            Some((holder, lease)) if holder == self.node && lease != 0 => {
                // Ours, from an earlier run of this daemon: keep its lease alive.
                info!("arbiter: the leader key is still on this node's lease {lease:x} from an earlier run: keeping it");
                let ttl = self.config.lease_ttl;
                self.lease = Some(Lease {
                    id: lease,
                    ttl,
                    stream: None,
                });
                return Ok(
                    match self
                        .each_member(async |t: &mut Task| t.refresh().await)
                        .await?
                    {
                        Some(valid_until) => ArbiterSample::Held { valid_until },
                        None => {
                            self.lease = None;
                            ArbiterSample::Free
                        }
                    },
                );
            }
            Some((holder, _)) => return Ok(ArbiterSample::HeldByOther { holder }),
            None => {}
        }
        let asked = self.config.lease_ttl.as_secs().max(1) as i64;
        let sent = Instant::now();
        let client = self.client().await?;
        let mut c = client.clone();
        let grant = self
            .timed("lease grant", c.lease_grant(asked, None))
            .await?;
        let id = grant.id();
        let ttl = Duration::from_secs(grant.ttl().max(0) as u64);
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(
                self.key.as_str(),
                self.node.as_str(),
                Some(PutOptions::new().with_lease(id)),
            )])
            .or_else([TxnOp::get(self.key.as_str(), None)]);
        let mut c = client.clone();
        let answer = match self.timed("compare-and-set", c.txn(txn)).await {
            Ok(answer) => answer,
            Err(e) => {
                // Whether the put happened is unknown: keep the lease so a retry can tell (the
                // key then holds our name on it and is adopted), or it runs out by itself.
                self.lease = Some(Lease {
                    id,
                    ttl,
                    stream: None,
                });
                return Err(e);
            }
        };
        if answer.succeeded() {
            info!(
                "arbiter: took the leader key {} (lease TTL {ttl:?})",
                self.key
            );
            self.lease = Some(Lease {
                id,
                ttl,
                stream: None,
            });
            return Ok(ArbiterSample::Held {
                valid_until: sent + ttl.saturating_sub(self.config.timeout),
            });
        }
        // Someone took it between our read and our write: leave it, drop our spare lease.
        let mut c = client;
        let _ = self.timed("lease revoke", c.lease_revoke(id)).await;
        let holder = answer
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            })
            .unwrap_or_default();
        Ok(ArbiterSample::HeldByOther { holder })
    }

    /// Refreshes the lease through the current member: `Some(valid_until)`, `None` when etcd
    /// says it is gone or the key is no longer on it.
    async fn refresh(&mut self) -> Result<Option<Instant>, Failure> {
        let id = self.lease.as_ref().map(|l| l.id).expect("holding a lease");
        if self.lease.as_ref().is_some_and(|l| l.stream.is_none()) {
            let mut c = self.client().await?;
            let stream = self
                .timed("lease keep-alive", c.lease_keep_alive(id))
                .await?;
            if let Some(lease) = &mut self.lease {
                lease.stream = Some(stream);
            }
        }
        let sent = Instant::now();
        let timeout = self.config.timeout;
        let endpoint = self.endpoint().to_string();
        let lease = self.lease.as_mut().expect("holding a lease");
        let (keeper, stream) = lease.stream.as_mut().expect("opened above");
        let answer = tokio::time::timeout(timeout, async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        let ttl = match answer {
            Ok(Ok(Some(reply))) if reply.ttl() > 0 => Duration::from_secs(reply.ttl() as u64),
            Ok(Ok(Some(_))) => {
                warn!("arbiter: etcd says the lease of the leader key is gone");
                return Ok(None);
            }
            Ok(Err(e)) => {
                return Err(format!(
                    "etcd lease keep-alive at {endpoint} failed: {e}; check that the member runs \
                     and reaches a quorum of the others"
                ))
            }
            Ok(Ok(None)) => {
                return Err(format!(
                    "etcd at {endpoint} closed the lease keep-alive stream; check the member"
                ))
            }
            Err(_) => {
                return Err(format!(
                    "etcd lease keep-alive at {endpoint} gave no answer within {timeout:?} \
                     (arbiter.timeout); check that the member runs and is reachable"
                ))
            }
        };
        lease.ttl = ttl;
        // A leader cut off from its quorum renews leases until it notices, and the leader
        // elected meanwhile never sees those renewals. A linearizable read cannot be served by
        // such a leader: only a refresh confirmed by one counts.
        match self.read_here().await? {
            Some((holder, on)) if holder == self.node && on == id => {
                Ok(Some(sent + ttl.saturating_sub(timeout)))
            }
            _ => {
                warn!("arbiter: the leader key is no longer on this node's lease");
                Ok(None)
            }
        }
    }

    /// Gives the key up at once.
    async fn release(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let id = lease.id;
        let revoked = self
            .each_member(async move |t: &mut Task| {
                let mut c = t.client().await?;
                t.timed("lease revoke", c.lease_revoke(id)).await
            })
            .await;
        match revoked {
            Ok(_) => info!("arbiter: released the leader key {}", self.key),
            // It runs out by itself within its TTL; the policy no longer counts on it.
            Err(e) => warn!("arbiter: releasing the leader key: {e}"),
        }
    }

    /// Reads the key and reports who holds it.
    async fn observe(&mut self) {
        let sample = match self.read().await {
            Ok(Some((holder, _))) => ArbiterSample::HeldByOther { holder },
            Ok(None) => ArbiterSample::Free,
            Err(reason) => ArbiterSample::Unknown { reason },
        };
        let answered = !matches!(sample, ArbiterSample::Unknown { .. });
        self.report(sample).await;
        if answered {
            self.read_record(false).await;
        }
    }

    /// Reads the sync record (in a sync mode) and reports it; `under_key`: this node holds the
    /// key, confirmed just before.
    async fn read_record(&mut self, under_key: bool) {
        let Some(key) = self.sync_key.clone() else {
            return;
        };
        let record = match self
            .each_member(async |t: &mut Task| t.read_record_here().await)
            .await
        {
            Ok(Some(raw)) => SyncRecordValue::interpret(&raw, &key, &self.node),
            Ok(None) => SyncRecord::Absent,
            Err(reason) => SyncRecord::Unknown { reason },
        };
        if !under_key && self.last_record.as_ref() == Some(&record) {
            return;
        }
        if self.last_record.as_ref() != Some(&record) {
            match &record {
                SyncRecord::Unknown { reason } => warn!("arbiter: sync record: {reason}"),
                other => info!("arbiter: sync record {key}: {other:?}"),
            }
        }
        self.last_record = Some(record.clone());
        let _ = self
            .inputs
            .send(Input::SyncRecord { record, under_key })
            .await;
    }

    /// [`Task::read_record`] through the current member: the record's raw value, if any.
    async fn read_record_here(&mut self) -> Result<Option<Vec<u8>>, Failure> {
        let key = self.sync_key.clone().expect("in a sync mode");
        let mut c = self.client().await?;
        let got = self.timed("sync record read", c.get(key, None)).await?;
        Ok(got.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// The key's holder and lease, if it exists, from the first member that answers.
    async fn read(&mut self) -> Result<Option<(String, i64)>, Failure> {
        self.each_member(async |t: &mut Task| t.read_here().await)
            .await
    }

    /// [`Task::read`] through the current member only (a linearizable read).
    async fn read_here(&mut self) -> Result<Option<(String, i64)>, Failure> {
        let mut c = self.client().await?;
        let key = self.key.clone();
        let got = self.timed("read", c.get(key, None)).await?;
        Ok(got
            .kvs()
            .first()
            .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease())))
    }
}

/// How the client connects: the timeouts, leader required, user/password, TLS.
fn connect_options(c: &Arbiter) -> Result<ConnectOptions, Failure> {
    let mut options = ConnectOptions::new()
        .with_timeout(c.timeout)
        .with_connect_timeout(c.timeout)
        // A member cut off from the quorum answers with an error, not with stale data.
        .with_require_leader(true);
    if let (Some(user), Some(password)) = (&c.user, &c.password) {
        options = options.with_user(user.clone(), password.expose().to_string());
    }
    if let Some(tls) = &c.tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                format!(
                    "cannot read {} (arbiter TLS): {e}; check the path and its permissions",
                    path.display()
                )
            })
        };
        let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(t);
    }
    Ok(options)
}

/// Writes the sync record on the policy's requests, beside the [`Task`]: a write must not wait
/// behind a lease refresh that hangs on a member cut off from its leader. Its own connection,
/// one member at a time like the task's.
struct RecordWriter {
    node: String,
    peer: Option<String>,
    leader_key: String,
    sync_key: Option<String>,
    config: Arbiter,
    inputs: mpsc::Sender<Input>,
    /// The lease the leader key is on, as the task last knew it.
    lease: watch::Receiver<Option<i64>>,
    client: Option<Client>,
    endpoint: usize,
}

impl RecordWriter {
    async fn run(mut self, mut records: mpsc::UnboundedReceiver<SyncRecordWrite>) {
        while let Some(record) = records.recv().await {
            self.write(record).await;
        }
    }

    /// Writes the sync record if the leader key is still on this node's lease, reports the
    /// outcome (`Err` with the endpoint and the fix), then reads it back.
    async fn write(&mut self, record: SyncRecordWrite) {
        let lease = *self.lease.borrow();
        let result = match (self.sync_key.clone(), lease) {
            (None, _) => Err("no sync record outside the sync modes".to_string()),
            (Some(_), None) => Err(format!(
                "this node does not hold the leader key {} (no lease): only its holder writes \
                 the sync record",
                self.leader_key
            )),
            (Some(key), Some(lease)) => {
                let value = SyncRecordValue {
                    sync_standby: match record {
                        SyncRecordWrite::Standby => self.peer.clone(),
                        SyncRecordWrite::None => None,
                    },
                    primary: self.node.clone(),
                    since_unix_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                };
                let value = serde_json::to_string(&value).expect("a plain struct serializes");
                let txn = Txn::new()
                    .when([Compare::lease(
                        self.leader_key.as_str(),
                        CompareOp::Equal,
                        lease,
                    )])
                    .and_then([TxnOp::put(key, value, None)]);
                match self
                    .each_member("sync record write", |mut c| {
                        let txn = txn.clone();
                        async move { c.txn(txn).await }
                    })
                    .await
                {
                    Ok(answer) if answer.succeeded() => Ok(()),
                    Ok(_) => Err(format!(
                        "the leader key {} is no longer on this node's lease {lease:x}: the \
                         sync record was not written (only the key's holder writes it)",
                        self.leader_key
                    )),
                    Err(e) => Err(e),
                }
            }
        };
        match &result {
            Ok(()) => info!("arbiter: sync record written: {record:?}"),
            Err(e) => warn!("arbiter: sync record ({record:?}) not written: {e}"),
        }
        // Once the transaction confirmed the key is ours, the read after it is one under it.
        let under_key = result.is_ok();
        let _ = self
            .inputs
            .send(Input::SyncRecordWritten { record, result })
            .await;
        let Some(key) = self.sync_key.clone() else {
            return;
        };
        let read = match self
            .each_member("sync record read", |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await
        {
            Ok(got) => match got.kvs().first() {
                Some(kv) => SyncRecordValue::interpret(kv.value(), &key, &self.node),
                None => SyncRecord::Absent,
            },
            Err(reason) => SyncRecord::Unknown { reason },
        };
        let _ = self
            .inputs
            .send(Input::SyncRecord {
                record: read,
                under_key,
            })
            .await;
    }

    /// `call` on each member in turn (from the current one) until one answers in time.
    async fn each_member<T, F>(
        &mut self,
        what: &str,
        call: impl Fn(Client) -> F,
    ) -> Result<T, Failure>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let members = self.config.endpoints.len().max(1);
        let timeout = self.config.timeout;
        let mut last = String::new();
        for _ in 0..members {
            let endpoint = self.config.endpoints[self.endpoint].clone();
            let answer = async {
                if self.client.is_none() {
                    let options = connect_options(&self.config)?;
                    let connect = Client::connect([endpoint.clone()], Some(options));
                    match tokio::time::timeout(timeout, connect).await {
                        Ok(Ok(client)) => self.client = Some(client),
                        Ok(Err(e)) => {
                            return Err(format!("etcd connect at {endpoint} failed: {e}"))
                        }
                        Err(_) => {
                            return Err(format!(
                                "etcd connect at {endpoint} gave no answer within {timeout:?}"
                            ))
                        }
                    }
                }
                let client = self.client.clone().expect("connected above");
                match tokio::time::timeout(timeout, call(client)).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(e)) => Err(format!("etcd {what} at {endpoint} failed: {e}")),
                    Err(_) => Err(format!(
                        "etcd {what} at {endpoint} gave no answer within {timeout:?} \
                         (arbiter.timeout)"
                    )),
                }
            }
            .await;
            match answer {
                Ok(value) => return Ok(value),
                Err(e) => {
                    last = e;
                    self.client = None;
                    self.endpoint = (self.endpoint + 1) % members;
                }
            }
        }
        Err(format!(
            "{last}; check that the members run and reach a quorum of the others \
             (arbiter.endpoints), and arbiter.user/password/tls_*{}",
            if members > 1 {
                format!(" (each of the {members} members tried)")
            } else {
                String::new()
            }
        ))
    }
}
