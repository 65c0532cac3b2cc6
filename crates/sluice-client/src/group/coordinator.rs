//! [`Coordinator`]: sends one group's calls to the broker coordinating it (docs/adr/0005), or
//! one transactional id's to its transaction coordinator (docs/TRANSACTIONS.md): the two are
//! found and followed alike, each through its own service ([`Kind`]).
//!
//! The coordinator is found with `FindCoordinator`, asked of the known brokers in turn, and
//! remembered until it stops being right: `NOT_COORDINATOR` (following the coordinator the
//! broker names, if it names one), a transport failure or a broker that is shutting down make
//! the next call look again; `COORDINATOR_LOADING` is waited out at the same broker.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_proto::{ErrorCode, error_of, v1};

use crate::client::{Answer, Client, GroupsRpc, TxnRpc};
use crate::error::{Error, Result};

/// After this many consecutive redirects to a named coordinator, retries pause as for any
/// other error, so two brokers that name each other cannot make the client spin.
pub(crate) const MAX_IMMEDIATE_REDIRECTS: u32 = 3;

macro_rules! group_answers {
    ($($t:ty),*) => {$(
        impl Answer for $t {
            fn error(&self) -> Option<&sluice_proto::Error> {
                self.error.as_ref()
            }
        }
    )*};
}
group_answers!(
    v1::FindCoordinatorResponse,
    v1::GroupHeartbeatResponse,
    v1::CommitOffsetsResponse,
    v1::FetchOffsetsResponse,
    v1::ListGroupsResponse,
    v1::DescribeGroupResponse,
    v1::SetGroupFilterResponse,
    v1::SettleMessagesResponse,
    v1::PollRetriesResponse,
    v1::SetRetryPolicyResponse,
    v1::DescribeRetriesResponse,
    v1::RedriveDeadLettersResponse,
    v1::PurgeDeadLettersResponse,
    v1::FindTxnCoordinatorResponse,
    v1::InitTransactionsResponse,
    v1::AddTxnPartitionsResponse,
    v1::EndTransactionResponse,
    v1::ListTransactionsResponse,
    v1::DescribeTransactionResponse,
    v1::ForceEndTransactionResponse,
    v1::TxnCommitOffsetsResponse
);

/// What a `FindCoordinator` answered: its error and the coordinator it named.
type Found = (Option<sluice_proto::Error>, Option<v1::BrokerAddress>);
type FindCall = Pin<Box<dyn Future<Output = std::result::Result<Found, tonic::Status>> + Send>>;

/// A kind of coordinated key: consumer groups, or transactional ids.
pub(crate) trait Kind: Send + Sync + 'static {
    /// The generated client of the service.
    type Rpc;
    /// What a key is, in messages.
    const NOUN: &'static str;
    /// What the service serves, in messages.
    const SERVES: &'static str;
    /// The service's client for the broker at `address`.
    fn rpc(client: &Client, address: &str) -> Result<Self::Rpc>;
    /// Asks the broker behind `rpc` which broker coordinates `key`.
    fn find(rpc: Self::Rpc, key: String) -> FindCall;
}

/// Consumer groups: the `Groups` service.
pub(crate) struct Groups;

impl Kind for Groups {
    type Rpc = GroupsRpc;
    const NOUN: &'static str = "group";
    const SERVES: &'static str = "consumer groups";
    fn rpc(client: &Client, address: &str) -> Result<GroupsRpc> {
        client.groups_rpc(address)
    }
    fn find(mut rpc: GroupsRpc, group: String) -> FindCall {
        Box::pin(async move {
            let a = rpc.find_coordinator(v1::FindCoordinatorRequest { group }).await?.into_inner();
            Ok((a.error, a.coordinator))
        })
    }
}

/// Transactional ids: the `Transactions` service.
pub(crate) struct Txns;

impl Kind for Txns {
    type Rpc = TxnRpc;
    const NOUN: &'static str = "transactional id";
    const SERVES: &'static str = "transactions";
    fn rpc(client: &Client, address: &str) -> Result<TxnRpc> {
        client.txn_rpc(address)
    }
    fn find(mut rpc: TxnRpc, transactional_id: String) -> FindCall {
        Box::pin(async move {
            let request = v1::FindTxnCoordinatorRequest { transactional_id };
            let a = rpc.find_txn_coordinator(request).await?.into_inner();
            Ok((a.error, a.coordinator))
        })
    }
}

/// How one attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Not worth repeating.
    Fatal(Error),
    /// Worth repeating; at once if `redirected` (the coordinator moved and is known).
    Retry { error: Error, redirected: bool },
}

impl Failure {
    fn retry(error: Error) -> Failure {
        Failure::Retry { error, redirected: false }
    }

    /// The error, whatever the kind.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::Fatal(error) | Failure::Retry { error, .. } => error,
        }
    }
}

/// Routes one group's (or transactional id's) calls to its coordinator.
pub(crate) struct Coordinator<K: Kind = Groups> {
    client: Client,
    group: Arc<str>,
    /// The coordinator's client address, while it is believed right.
    address: Mutex<Option<String>>,
    /// Which broker `FindCoordinator` asks next (each failure moves on to another).
    next_broker: AtomicUsize,
    kind: PhantomData<K>,
}

impl Coordinator<Groups> {
    /// Routes calls for `group`; nothing is asked until the first call.
    pub(crate) fn new(client: Client, group: &str) -> Coordinator {
        Coordinator::of(client, group)
    }
}

impl<K: Kind> Coordinator<K> {
    /// Routes calls for `key`; nothing is asked until the first call.
    pub(crate) fn of(client: Client, key: &str) -> Coordinator<K> {
        Coordinator {
            client,
            group: Arc::from(key),
            address: Mutex::new(None),
            next_broker: AtomicUsize::new(0),
            kind: PhantomData,
        }
    }

    /// The group's id (or the transactional id).
    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    /// The client the calls go through.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Sends `op` to the coordinator until it is answered with anything but a retriable
    /// error, or `deadline` passes. An answer carrying an error code becomes that error.
    pub(crate) async fn call<R, F, Fut>(&self, kind: &'static str, deadline: Instant, mut op: F) -> Result<R>
    where
        R: Answer,
        F: FnMut(K::Rpc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let started = Instant::now();
        let config = self.client.config();
        let mut backoff = config.retry_backoff_min;
        let mut redirects = 0;
        loop {
            let error = match self.attempt(&mut op).await {
                Ok(answer) => {
                    let error = error_of(answer.error());
                    return if error.is_ok() { Ok(answer) } else { Err(Error::from_proto(&error)) };
                }
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry { redirected: true, .. }) if redirects < MAX_IMMEDIATE_REDIRECTS => {
                    redirects += 1;
                    continue;
                }
                Err(Failure::Retry { error, .. }) => error,
            };
            redirects = 0;
            if Instant::now() + backoff >= deadline {
                let operation = format!("{kind} for {} {}", K::NOUN, self.group);
                return Err(Error::Timeout { operation, elapsed: started.elapsed(), last: Box::new(error) });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(config.retry_backoff_max);
        }
    }

    /// One attempt of `op` at the coordinator, finding it first if it is not known. Answers
    /// with a non-retriable error code are returned as they are.
    pub(crate) async fn attempt<R, F, Fut>(&self, op: &mut F) -> Result<R, Failure>
    where
        R: Answer,
        F: FnMut(K::Rpc) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let cached = self.address.lock().expect("coordinator lock").clone();
        let address = match cached {
            Some(address) => address,
            None => self.find().await?,
        };
        let answer = match attempt_at::<K, R, F, Fut>(&self.client, &address, op).await {
            Ok(answer) => answer,
            Err(failure) => {
                self.forget(&address);
                return Err(failure);
            }
        };
        let error = error_of(answer.error());
        let code = error.error_code();
        if !code.is_retriable() {
            return Ok(answer);
        }
        let failure = Error::from_proto(&error);
        match code {
            ErrorCode::CoordinatorLoading => Err(Failure::retry(failure)),
            ErrorCode::NotCoordinator => {
                let named = error.leader.as_ref().map(|l| l.client_address.clone());
                match named.filter(|a| !a.is_empty() && *a != address) {
                    Some(next) => {
                        *self.address.lock().expect("coordinator lock") = Some(next);
                        Err(Failure::Retry { error: failure, redirected: true })
                    }
                    None => {
                        self.forget(&address);
                        Err(Failure::retry(failure))
                    }
                }
            }
            _ => {
                self.forget(&address);
                Err(Failure::retry(failure))
            }
        }
    }

    /// Forgets the coordinator if it is still `address`.
    fn forget(&self, address: &str) {
        let mut cached = self.address.lock().expect("coordinator lock");
        if cached.as_deref() == Some(address) {
            *cached = None;
        }
    }

    /// Asks one broker (the next in turn) which broker coordinates the group.
    async fn find(&self) -> Result<String, Failure> {
        let candidates = self.candidates();
        let turn = self.next_broker.fetch_add(1, Ordering::Relaxed);
        let broker = &candidates[turn % candidates.len()];
        let key = self.group.to_string();
        let mut op = |rpc: K::Rpc| {
            let found = K::find(rpc, key.clone());
            async move { found.await.map(tonic::Response::new) }
        };
        let (error, coordinator) = attempt_at::<K, Found, _, _>(&self.client, broker, &mut op).await?;
        let error = error_of(error.as_ref());
        if !error.is_ok() {
            let failure = Error::from_proto(&error);
            return Err(if error.error_code().is_retriable() {
                Failure::retry(failure)
            } else {
                Failure::Fatal(failure)
            });
        }
        let address = coordinator.map(|c| c.client_address).filter(|a| !a.is_empty());
        let Some(address) = address else {
            let message = format!("broker {broker} named no coordinator for {} {}", K::NOUN, self.group);
            return Err(Failure::Fatal(Error::Protocol { address: broker.clone(), message }));
        };
        *self.address.lock().expect("coordinator lock") = Some(address.clone());
        Ok(address)
    }

    /// Live brokers from the metadata, then the bootstrap addresses.
    fn candidates(&self) -> Vec<String> {
        let metadata = self.client.metadata();
        let mut candidates: Vec<String> =
            metadata.brokers.values().filter(|b| b.live).map(|b| b.address.clone()).collect();
        for address in &self.client.config().bootstrap {
            if !candidates.contains(address) {
                candidates.push(address.clone());
            }
        }
        candidates
    }
}

/// One attempt of `op` at the broker at `address`, within the request timeout. Transport
/// failures and retriable codes are left to the caller to classify; a broker that does not
/// serve the service of kind `K` fails for good.
pub(crate) async fn attempt_at<K, R, F, Fut>(client: &Client, address: &str, op: &mut F) -> Result<R, Failure>
where
    K: Kind,
    F: FnMut(K::Rpc) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
{
    let rpc = K::rpc(client, address).map_err(Failure::Fatal)?;
    let limit: Duration = client.config().request_timeout;
    match tokio::time::timeout(limit, op(rpc)).await {
        Err(_) => {
            let message = format!("no answer within {} ms", limit.as_millis());
            let code = tonic::Code::DeadlineExceeded;
            Err(Failure::retry(Error::Transport { address: address.to_owned(), code, message }))
        }
        Ok(Err(status)) => Err(match status.code() {
            tonic::Code::Unimplemented | tonic::Code::InvalidArgument => Failure::Fatal(Error::Protocol {
                address: address.to_owned(),
                message: format!("the broker does not serve {}: {}", K::SERVES, status.message()),
            }),
            _ => Failure::retry(Error::from_status(address, &status)),
        }),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}
