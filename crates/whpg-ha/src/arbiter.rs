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
//!
//! Every report is conservative: `Held { valid_until }` counts from the moment the refresh was
//! *sent* (etcd counts from when it arrived, later), with one request timeout of margin. Any
//! error or timeout is `Unknown` with the endpoints and the fix: never "the peer holds it".

use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Identity, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use whpg_policy::{ArbiterAction, ArbiterSample, Input};

use crate::config::{Arbiter, Config};

/// How often a node that wants the key but does not hold it looks again (at most).
const CAMPAIGN_POLL: Duration = Duration::from_millis(200);

/// Where the policy's requests reach the etcd task.
#[derive(Debug, Clone)]
pub struct ArbiterHandle {
    wanted: watch::Sender<Option<ArbiterAction>>,
}

impl ArbiterHandle {
    /// Carry out `action` (idempotent: the latest one counts).
    pub fn ask(&self, action: ArbiterAction) {
        self.wanted.send_replace(Some(action));
    }
}

/// Starts the etcd task when `[arbiter]` is configured.
pub fn spawn(config: &Config, inputs: mpsc::Sender<Input>) -> Option<ArbiterHandle> {
    let arbiter = config.arbiter.clone()?;
    let (wanted, rx) = watch::channel(None);
    let task = Task {
        node: config.local.name.clone(),
        key: arbiter.leader_key(),
        config: arbiter,
        inputs,
        client: None,
        lease: None,
        last_sent: None,
    };
    tokio::spawn(task.run(rx));
    Some(ArbiterHandle { wanted })
}

/// The lease this node holds the key on.
struct Lease {
    id: i64,
    /// The TTL etcd granted (it may raise what was asked to its minimum).
    ttl: Duration,
    /// The keep-alive stream, opened on first use and again after an error.
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

struct Task {
    node: String,
    key: String,
    config: Arbiter,
    inputs: mpsc::Sender<Input>,
    client: Option<Client>,
    lease: Option<Lease>,
    /// The latest report other than `Held` (those are sent every time: they extend the lease).
    last_sent: Option<ArbiterSample>,
}

/// An etcd failure, in words, for `Unknown`.
type Failure = String;

impl Task {
    async fn run(mut self, mut wanted: watch::Receiver<Option<ArbiterAction>>) {
        info!(
            "arbiter: etcd at {}, leader key {}, lease TTL {:?}",
            self.config.endpoints.join(","),
            self.key,
            self.config.lease_ttl
        );
        loop {
            let action = *wanted.borrow_and_update();
            let pause = match action {
                Some(ArbiterAction::Campaign) => self.campaign().await,
                Some(ArbiterAction::Release) | None => {
                    if action.is_some() {
                        self.release().await;
                    }
                    self.observe().await;
                    self.config.keepalive_interval
                }
            };
            tokio::select! {
                changed = wanted.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(pause) => {}
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

    /// One step of wanting the key; returns how long to wait before the next.
    async fn campaign(&mut self) -> Duration {
        if self.lease.is_some() {
            // A refresh that failed is tried once more on a new stream: the client spreads
            // requests over the members, and one that is down or cut off from the leader fails
            // while the others answer.
            let refreshed = match self.refresh().await {
                Err(_) if self.lease.is_some() => self.refresh().await,
                other => other,
            };
            let sample = match refreshed {
                Ok(Some(valid_until)) => ArbiterSample::Held { valid_until },
                Ok(None) => {
                    // The lease is gone (it ran out, or an operator revoked it): ask again now.
                    self.lease = None;
                    return Duration::ZERO;
                }
                Err(reason) => ArbiterSample::Unknown { reason },
            };
            self.report(sample).await;
            return self.config.keepalive_interval;
        }
        let sample = match self.acquire().await {
            Ok(sample) => sample,
            Err(reason) => ArbiterSample::Unknown { reason },
        };
        let held = matches!(sample, ArbiterSample::Held { .. });
        self.report(sample).await;
        if held {
            self.config.keepalive_interval
        } else {
            CAMPAIGN_POLL.min(self.config.keepalive_interval)
        }
    }

    async fn client(&mut self) -> Result<&mut Client, Failure> {
        if self.client.is_none() {
            let options = self.options()?;
            let endpoints = self.config.endpoints.clone();
            let client = self
                .timed("connect", Client::connect(endpoints, Some(options)))
                .await?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn options(&self) -> Result<ConnectOptions, Failure> {
        let c = &self.config;
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
            let mut t =
                TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(t);
        }
        Ok(options)
    }

    /// `what` with the configured timeout; an error says where and what to do.
    async fn timed<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        let endpoints = self.config.endpoints.join(", ");
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!(
                "etcd {what} at {endpoints} failed: {e}; check that a quorum of the members runs \
                 and answers there (arbiter.endpoints), and arbiter.user/password/tls_*"
            )),
            Err(_) => Err(format!(
                "etcd {what} at {endpoints} gave no answer within {:?} (arbiter.timeout); check \
                 that a quorum of the members runs and is reachable from this node",
                self.config.timeout
            )),
        }
    }

    /// Takes the key if it is free (or ours from an earlier run).
    async fn acquire(&mut self) -> Result<ArbiterSample, Failure> {
        match self.read().await? {
            Some((holder, lease)) if holder == self.node && lease != 0 => {
                // Ours, from an earlier run of this daemon: keep its lease alive.
                let ttl = self.config.lease_ttl;
                self.lease = Some(Lease {
                    id: lease,
                    ttl,
                    stream: None,
                });
                return Ok(match self.refresh().await? {
                    Some(valid_until) => ArbiterSample::Held { valid_until },
                    None => {
                        self.lease = None;
                        ArbiterSample::Free
                    }
                });
            }
            Some((holder, _)) => return Ok(ArbiterSample::HeldByOther { holder }),
            None => {}
        }
        let asked = self.config.lease_ttl.as_secs().max(1) as i64;
        let sent = Instant::now();
        let client = self.client().await?.clone();
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
                valid_until: self.valid_until(sent, ttl),
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

    fn valid_until(&self, sent: Instant, ttl: Duration) -> Instant {
        sent + ttl.saturating_sub(self.config.timeout)
    }

    /// Refreshes the lease: `Some(valid_until)`, `None` when etcd says it is gone.
    async fn refresh(&mut self) -> Result<Option<Instant>, Failure> {
        let id = self.lease.as_ref().map(|l| l.id).expect("holding a lease");
        if self.lease.as_ref().is_some_and(|l| l.stream.is_none()) {
            let mut c = self.client().await?.clone();
            let stream = self
                .timed("lease keep-alive", c.lease_keep_alive(id))
                .await?;
            if let Some(lease) = &mut self.lease {
                lease.stream = Some(stream);
            }
        }
        let sent = Instant::now();
        let timeout = self.config.timeout;
        let endpoints = self.config.endpoints.join(", ");
        let lease = self.lease.as_mut().expect("holding a lease");
        let (keeper, stream) = lease.stream.as_mut().expect("opened above");
        let answer = tokio::time::timeout(timeout, async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match answer {
            Ok(Ok(Some(reply))) if reply.ttl() > 0 => {
                let ttl = Duration::from_secs(reply.ttl() as u64);
                lease.ttl = ttl;
                Ok(Some(sent + ttl.saturating_sub(timeout)))
            }
            Ok(Ok(Some(_))) => {
                warn!("arbiter: etcd says the lease of the leader key is gone");
                Ok(None)
            }
            other => {
                // A broken stream is opened again on the next refresh.
                lease.stream = None;
                Err(match other {
                    Ok(Err(e)) => format!(
                        "etcd lease keep-alive at {endpoints} failed: {e}; check that a quorum \
                         of the members runs and answers there"
                    ),
                    Ok(Ok(None)) => format!(
                        "etcd at {endpoints} closed the lease keep-alive stream; check the members"
                    ),
                    _ => format!(
                        "etcd lease keep-alive at {endpoints} gave no answer within {timeout:?} \
                         (arbiter.timeout); check that a quorum of the members is reachable"
                    ),
                })
            }
        }
    }

    /// Gives the key up at once.
    async fn release(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let revoked = match self.client().await {
            Ok(c) => {
                let mut c = c.clone();
                self.timed("lease revoke", c.lease_revoke(lease.id)).await
            }
            Err(e) => Err(e),
        };
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
        self.report(sample).await;
    }

    /// The key's holder and lease, if it exists. A failed read is tried once more: the client
    /// spreads requests over the members, and one cut off from the leader refuses while the
    /// others answer.
    async fn read(&mut self) -> Result<Option<(String, i64)>, Failure> {
        let mut c = self.client().await?.clone();
        let key = self.key.clone();
        let got = match self.timed("read", c.get(key.clone(), None)).await {
            Ok(got) => got,
            Err(_) => self.timed("read", c.get(key, None)).await?,
        };
        Ok(got
            .kvs()
            .first()
            .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease())))
    }
}
