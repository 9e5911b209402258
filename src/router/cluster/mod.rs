//! Several nodes on one PostgreSQL database, with Redis between them.
//!
//! [`Cluster`] is the router of such a node. Its own sessions are a
//! [`LocalRouter`]'s; what they must hear from other nodes (messages,
//! receipts, typing, member notices, presence) arrives as envelopes on one
//! Redis channel that every node publishes to and subscribes to
//! ([`bus`]). Messages pass a [`Sequencer`], so each conversation reaches
//! sessions here in seq order with nothing twice and nothing skipped: what
//! Redis lost is read back from the store. Redis holds no truth: presence
//! is rebuilt from what each node re-announces, and groups from the store.

mod bus;
mod envelope;
mod remote;
mod sequencer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use self::remote::{Change, RemoteOnline};
use self::sequencer::{Arrival, Gap, Recipients, Sequencer};
use super::{Attached, Audience, GroupChange, Groups, LocalRouter, Position, Presence, Router, SessionHandle};
use crate::config::ClusterConfig;
use crate::protocol::Conversation;
use crate::store::{Store, StoredMessage};

/// Encodes a stored message as its `msg` frame (the server's encoding).
pub(crate) type EncodeMessage = fn(&StoredMessage) -> String;

/// What the cluster counts, for `/metrics`.
#[derive(Default)]
pub(crate) struct ClusterCounters {
    /// Redis commands or connections that failed.
    pub(crate) redis_errors: AtomicU64,
    /// Times the subscription was made again after it failed or fell silent.
    pub(crate) reconnects: AtomicU64,
    /// Backfills run: gaps read back from the store.
    pub(crate) backfills: AtomicU64,
    /// Messages delivered from backfills.
    pub(crate) backfilled: AtomicU64,
}

/// What a node of a cluster shares between its router and its Redis tasks.
pub(super) struct Node {
    /// This node's name.
    id: Arc<str>,
    config: ClusterConfig,
    local: LocalRouter,
    groups: Arc<Groups>,
    presence: Arc<Presence>,
    remote: Mutex<RemoteOnline>,
    sequencer: Sequencer,
    store: Arc<dyn Store>,
    encode: EncodeMessage,
    outgoing: mpsc::UnboundedSender<bus::Publish>,
    /// Why the bus does not work now, while it does not.
    failing: Mutex<Option<String>>,
    counters: Arc<ClusterCounters>,
    stopping: watch::Sender<bool>,
    /// The server's runtime: backfills start from the store's completion
    /// thread too, which is not one of its threads.
    runtime: tokio::runtime::Handle,
    /// Disconnects when the publisher has ended.
    published: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// How long a gap waits for its messages to arrive over Redis before they
/// are read from the store.
const BACKFILL_GRACE: Duration = Duration::from_millis(50);

/// How long a stopping node waits for its last envelopes and the removal
/// of its presence to reach Redis.
const FINAL_PUBLISH: Duration = Duration::from_secs(1);

/// The router of a node in a cluster.
pub(crate) struct Cluster {
    node: Arc<Node>,
}

impl Cluster {
    /// Starts the node's Redis tasks on the current runtime; they connect
    /// (and reconnect) on their own, so a Redis that is down at start only
    /// makes the node degraded until it answers.
    pub(crate) fn start(
        config: &ClusterConfig,
        redis: &str,
        store: Arc<dyn Store>,
        groups: Arc<Groups>,
        presence: Arc<Presence>,
        encode: EncodeMessage,
        counters: Arc<ClusterCounters>,
    ) -> Result<Cluster, String> {
        let client = redis::Client::open(redis).map_err(|e| format!("cluster.redis: {e}"))?;
        let id: Arc<str> = match &config.node_id {
            Some(id) => id.as_str().into(),
            None => format!("{:016x}", rand_id()).into(),
        };
        let (outgoing, queue) = mpsc::unbounded_channel();
        let (stopping, stopped) = watch::channel(false);
        let (publishing, published) = std::sync::mpsc::sync_channel(0);
        let node = Arc::new(Node {
            id,
            config: config.clone(),
            local: LocalRouter::new(),
            groups,
            presence,
            remote: Mutex::default(),
            sequencer: Sequencer::default(),
            store,
            encode,
            outgoing,
            failing: Mutex::new(Some("redis: not connected yet".into())),
            counters,
            stopping,
            runtime: tokio::runtime::Handle::current(),
            published: Mutex::new(Some(published)),
        });
        let publisher = bus::publish(node.clone(), client.clone(), queue, stopped.clone());
        tokio::spawn(async move {
            publisher.await;
            drop(publishing);
        });
        tokio::spawn(bus::subscribe(node.clone(), client.clone(), stopped.clone()));
        tokio::spawn(bus::heartbeat(node.clone(), client, stopped));
        Ok(Cluster { node })
    }
}

/// A node name unlikely to repeat: time and process.
fn rand_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((std::process::id() as u64) << 32)
}

impl Node {
    fn remote(&self) -> std::sync::MutexGuard<'_, RemoteOnline> {
        self.remote.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, item: bus::Publish) {
        let _ = self.outgoing.send(item);
    }

    /// This node's users, each with whether one of its sessions here is in
    /// the foreground: what its presence record in Redis says.
    fn local_presence(&self) -> Vec<(Arc<str>, bool)> {
        (self.local.online_users().into_iter())
            .map(|user| {
                let looking = self.local.is_looking(&user);
                (user, looking)
            })
            .collect()
    }

    /// Queues `conv`'s message `seq` to the sessions here of its recipients.
    fn deliver_here(&self, conv: &str, seq: u64, arrival: &Arrival) -> usize {
        let position: Option<Position<'_>> = Some((conv, seq));
        let except = arrival.except;
        match &arrival.recipients {
            Recipients::Direct(a, b) => {
                let mut n = self.local.deliver(a, &arrival.frame, position, except);
                if a != b {
                    n += self.local.deliver(b, &arrival.frame, position, except);
                }
                n
            }
            Recipients::Group(group) => self.groups.get(group).map_or(0, |g| {
                self.local
                    .deliver_to_group(group, &g.members, &arrival.frame, position, except)
            }),
        }
    }

    /// Whether a recipient of `recipients` has a session here.
    fn has_recipients_here(&self, recipients: &Recipients) -> bool {
        match recipients {
            Recipients::Direct(a, b) => self.local.is_online(a) || self.local.is_online(b),
            Recipients::Group(group) => {
                (self.groups.get(group)).is_some_and(|g| g.members.iter().any(|m| self.local.is_online(m)))
            }
        }
    }

    /// Passes `conv`'s message `seq` through the sequencer to the sessions
    /// here; how many it reached now (none while it waits for a backfill).
    /// A conversation with nobody here is not followed: with many nodes,
    /// each would otherwise track, and backfill, every conversation.
    fn arrive(self: &Arc<Self>, conv: &str, seq: u64, arrival: Arrival) -> usize {
        if !self.sequencer.follows(conv) && !self.has_recipients_here(&arrival.recipients) {
            return 0;
        }
        let mut delivered = 0;
        let gap = self.sequencer.arrive(conv, seq, arrival, &mut |seq, a| {
            delivered += self.deliver_here(conv, seq, a);
        });
        if let Some(gap) = gap {
            self.backfill(gap);
        }
        delivered
    }

    /// Reads `gap` from the store and delivers it, then any gap after it;
    /// a failed read is tried again a second later, until the node stops.
    /// It waits [`BACKFILL_GRACE`] first: a gap is most often a message
    /// another node stored a moment earlier, still on its way over Redis,
    /// and one that arrives meanwhile needs no read.
    fn backfill(self: &Arc<Self>, first: Gap) {
        let node = self.clone();
        self.runtime.spawn(async move {
            let mut gap = Some(first);
            while let Some(Gap {
                conv,
                after,
                before,
                history_before_ms,
            }) = gap.take()
            {
                tokio::time::sleep(BACKFILL_GRACE).await;
                if node.sequencer.delivered_before(&conv, before) {
                    gap = node.sequencer.backfilled(&conv, before, Vec::new(), &mut |seq, a| {
                        node.deliver_here(&conv, seq, a);
                    });
                    continue;
                }
                node.counters.backfills.fetch_add(1, Ordering::Relaxed);
                let (store, encode, read_conv) = (node.store.clone(), node.encode, conv.clone());
                let read = tokio::task::spawn_blocking(move || {
                    let limit = (before - after - 1) as usize;
                    store.history(&read_conv, Some(before), limit, usize::MAX).map(|found| {
                        found
                            .iter()
                            .filter(|m| m.seq > after && m.message.ts >= history_before_ms)
                            .map(|m| (m.seq, encode(m)))
                            .collect::<Vec<_>>()
                    })
                })
                .await;
                let Some(recipients) = recipients_of(&conv) else {
                    break;
                };
                gap = match read {
                    Ok(Ok(found)) => {
                        let count = found.len() as u64;
                        let found = (found.into_iter())
                            .map(|(seq, frame)| {
                                let arrival = Arrival {
                                    frame: Utf8Bytes::from(frame),
                                    recipients: recipients.clone(),
                                    except: None,
                                };
                                (seq, arrival)
                            })
                            .collect();
                        node.counters.backfilled.fetch_add(count, Ordering::Relaxed);
                        node.sequencer.backfilled(&conv, before, found, &mut |seq, a| {
                            node.deliver_here(&conv, seq, a);
                        })
                    }
                    _ => {
                        tracing::warn!(conv = %conv, "a backfill could not read the store; trying again");
                        let mut stopping = node.stopping.subscribe();
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stopping.wait_for(|stop| *stop) => return,
                        }
                        node.sequencer.backfill_failed(&conv)
                    }
                };
            }
        });
    }

    /// Applies what another node says `user`'s presence there is, telling
    /// watchers here when the user came online or went offline everywhere.
    fn presence_elsewhere(&self, node: &str, user: &str, online: bool, looking: bool) {
        let change = self.remote().set(node, user, online, looking);
        self.announce(user, change);
    }

    fn announce(&self, user: &str, change: Change) {
        if self.local.is_online(user) {
            return;
        }
        match change {
            Change::CameOnline => self.presence.announce(user, true),
            Change::WentOffline => self.presence.announce(user, false),
            Change::Same => {}
        }
    }
}

/// Who a conversation's messages go to, from its name.
fn recipients_of(conv: &str) -> Option<Recipients> {
    Some(match Conversation::parse(conv)? {
        Conversation::Direct(a, b) => Recipients::Direct(a.into(), b.into()),
        Conversation::Group(g) => Recipients::Group(g.into()),
    })
}

impl Router for Cluster {
    fn attach(&self, session: Arc<SessionHandle>, max_per_user: usize) -> Attached {
        let user = session.user.clone();
        let looking = !session.background.load(Ordering::Relaxed);
        let attached = self.node.local.attach(session, max_per_user);
        if attached != Attached::CameOnline {
            return attached;
        }
        self.node.publish(bus::Publish::Presence {
            user: user.clone(),
            online: true,
            looking,
        });
        if self.node.remote().is_online(&user) {
            Attached::AlreadyOnline
        } else {
            Attached::CameOnline
        }
    }

    fn detach(&self, session: &SessionHandle) -> bool {
        if !self.node.local.detach(session) {
            return false;
        }
        self.node.publish(bus::Publish::Presence {
            user: session.user.clone(),
            online: false,
            looking: false,
        });
        !self.node.remote().is_online(&session.user)
    }

    fn sessions_of(&self, user: &str) -> Vec<Arc<SessionHandle>> {
        self.node.local.sessions_of(user)
    }

    fn is_online(&self, user: &str) -> bool {
        self.node.local.is_online(user) || self.node.remote().is_online(user)
    }

    fn online_users(&self) -> Vec<Arc<str>> {
        let mut users = self.node.local.online_users();
        users.extend(self.node.remote().users());
        users.sort();
        users.dedup();
        users
    }

    fn deliver(&self, user: &str, frame: &Utf8Bytes, position: Option<Position<'_>>, except: Option<u64>) -> usize {
        self.node.publish(bus::Publish::Deliver {
            user: user.into(),
            frame: frame.clone(),
        });
        self.node.local.deliver(user, frame, position, except)
    }

    fn fanout(&self, conv: &str, seq: u64, frame: &Utf8Bytes, audience: Audience<'_>, except: Option<u64>) -> usize {
        let recipients = match audience {
            Audience::Direct(a, b) => Recipients::Direct(a.into(), b.into()),
            Audience::Group(group, _) => Recipients::Group(group.into()),
        };
        self.node.publish(bus::Publish::Message {
            conv: conv.into(),
            seq,
            frame: frame.clone(),
            recipients: recipients.clone(),
        });
        let arrival = Arrival {
            frame: frame.clone(),
            recipients,
            except,
        };
        self.node.arrive(conv, seq, arrival)
    }

    fn is_looking(&self, user: &str) -> bool {
        self.node.local.is_looking(user) || self.node.remote().is_looking(user)
    }

    fn looking_changed(&self, user: &str) {
        self.node.publish(bus::Publish::Presence {
            user: user.into(),
            online: self.node.local.is_online(user),
            looking: self.node.local.is_looking(user),
        });
    }

    fn group_changed(&self, change: GroupChange<'_>) {
        self.node.publish(match change {
            GroupChange::Member { group, user, member } => bus::Publish::Member {
                group: group.into(),
                user: user.into(),
                member,
            },
            GroupChange::Closed { group, closed } => bus::Publish::Closed {
                group: group.into(),
                closed,
            },
        });
    }

    fn synced(&self, conv: &str, last_seq: u64) {
        self.node.sequencer.synced(conv, last_seq);
    }

    fn degraded(&self) -> Option<String> {
        self.node.failing.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn close_all(&self, code: u16, reason: &'static str) {
        self.node.local.close_all(code, reason);
    }

    fn for_each_session(&self, visit: &mut dyn FnMut(&SessionHandle)) {
        self.node.local.for_each_session(visit);
    }

    fn session_count(&self) -> usize {
        self.node.local.session_count()
    }

    fn user_count(&self) -> usize {
        self.node.local.user_count()
    }

    /// Ends the Redis tasks; the publisher first takes this node's presence
    /// out of Redis, so the other nodes see its users leave at once.
    fn stop(&self) {
        let _ = self.node.stopping.send(true);
        if let Some(published) = self.node.published.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = published.recv_timeout(FINAL_PUBLISH);
        }
    }
}
