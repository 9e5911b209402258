//! The state every task of a running server shares, and the one path by
//! which a message is stored and delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::auth::Authenticator;
use super::files::FileShelf;
use super::keepalive::Keepalive;
use super::metrics::{Live, Metrics};
use super::msg_frames::msg_frame;
use super::push::{self, PushPump};
use crate::config::Config;
use crate::host::Event;
use crate::host::dispatcher::EventQueue;
use crate::host::gate::CallbackGate;
use crate::protocol::Conversation;
use crate::router::{Audience, Groups, Presence, Router};
use crate::store::{Appended, NewMessage, Store, StoreError};

/// Shared by the accept loop, every connection and the host's calls.
pub(crate) struct Core {
    /// The configuration the server was created with.
    pub(crate) config: Config,
    /// Where messages are kept.
    pub(crate) store: Arc<dyn Store>,
    /// Who is online where.
    pub(crate) router: Arc<dyn Router>,
    /// Group membership, as fan-out reads it.
    pub(crate) groups: Arc<Groups>,
    /// Presence subscriptions.
    pub(crate) presence: Arc<Presence>,
    /// Serializes membership changes of each group, so each decision sees
    /// the one before; striped by group, so a storm of joins to some groups
    /// does not queue a bystander's join to another behind them.
    membership_changes: Vec<std::sync::Mutex<()>>,
    /// Events for the host.
    pub(crate) events: Arc<EventQueue>,
    /// Token to user id.
    pub(crate) auth: Authenticator,
    /// The door to the host's callbacks.
    pub(crate) gate: Arc<CallbackGate>,
    /// Becomes true when the server stops.
    pub(crate) stopping: watch::Receiver<bool>,
    /// Distinguishes this server's session names from another run's.
    instance: u64,
    /// Counter behind session ids and generated message ids.
    counter: AtomicU64,
    /// Accepted TCP connections not yet closed (handshakes included).
    pub(crate) open_connections: std::sync::atomic::AtomicUsize,
    /// Counters for `GET /metrics` and [`Core::stats`].
    pub(crate) metrics: Metrics,
    /// Store reads (`sync`, `history`, `conversations`) of all sessions in
    /// flight at once, so that many sessions cannot pile work on the
    /// store's readers and the blocking pool.
    pub(crate) store_reads: Arc<Semaphore>,
    /// Wakes the offering of push requests.
    pub(crate) pushes: PushPump,
    /// Uploaded files' bytes, when `files.dir` is configured.
    pub(crate) files: Option<FileShelf>,
    /// The clock of pings and idle timeouts.
    pub(crate) keepalive: Keepalive,
}

/// Locks over which groups' membership changes are spread.
const MEMBERSHIP_STRIPES: usize = 64;

/// Store reads of all sessions in flight at once.
const MAX_STORE_READS: usize = 16;

/// The counters of [`crate::Server::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Open authenticated sessions.
    pub connections: u64,
    /// Users with at least one session.
    pub users_online: u64,
    /// Messages stored since start.
    pub messages_stored: u64,
    /// `msg` frames queued to sessions since start.
    pub messages_delivered: u64,
}

impl Core {
    /// Assembles the core.
    pub(crate) fn new(
        (config, files): (Config, Option<FileShelf>),
        store: Arc<dyn Store>,
        (router, groups, presence): (Arc<dyn Router>, Arc<Groups>, Arc<Presence>),
        metrics: Metrics,
        events: Arc<EventQueue>,
        gate: Arc<CallbackGate>,
        stopping: watch::Receiver<bool>,
    ) -> Core {
        let auth = Authenticator::new(&config.auth);
        let keepalive = Keepalive::new(&config.limits);
        Core {
            config,
            store,
            router,
            groups,
            presence,
            membership_changes: (0..MEMBERSHIP_STRIPES).map(|_| std::sync::Mutex::new(())).collect(),
            open_connections: std::sync::atomic::AtomicUsize::new(0),
            metrics,
            events,
            auth,
            gate,
            stopping,
            instance: crate::protocol::now_ms() as u64,
            counter: AtomicU64::new(0),
            store_reads: Arc::new(Semaphore::new(MAX_STORE_READS)),
            pushes: PushPump::default(),
            files,
            keepalive,
        }
    }

    /// The current counters.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            connections: self.router.session_count() as u64,
            users_online: self.router.user_count() as u64,
            messages_stored: self.metrics.messages_in.get(),
            messages_delivered: self.metrics.messages_out.get(),
        }
    }

    /// Held while `group`'s membership changes.
    pub(crate) fn membership_lock(&self, group: &str) -> std::sync::MutexGuard<'_, ()> {
        let stripe = ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(group) as usize % MEMBERSHIP_STRIPES;
        self.membership_changes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A number unique within this server.
    pub(crate) fn next_number(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A name unique across runs of this server, such as `s-18c1f2a-7`.
    pub(crate) fn unique_name(&self, prefix: &str, number: u64) -> String {
        format!("{prefix}-{:x}-{number:x}", self.instance)
    }

    /// The text of a `GET /metrics` scrape.
    pub(crate) fn render_metrics(&self) -> String {
        let stats = self.stats();
        self.metrics.render(Live {
            connections: stats.connections,
            users_online: stats.users_online,
            sockets: self.open_connections.load(Ordering::Relaxed) as u64,
            store_errors: self.store.health().errors,
        })
    }

    /// Which dependency is failing and how, when one is: what `/healthz` says.
    /// A store that cannot write makes the node unable to serve (critical);
    /// a cluster link that is down only delays other nodes' messages here.
    pub(crate) fn degraded(&self) -> Option<(bool, String)> {
        let store = self.store.health().failing.map(|why| (true, format!("store: {why}")));
        store.or_else(|| self.router.degraded().map(|why| (false, format!("cluster: {why}"))))
    }

    /// Whether the server is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Stores `message` (with push requests for its recipients who are not
    /// looking), then delivers it to every session of its recipients but
    /// `sender_session`, tells the host, and calls `reply` with the store's
    /// outcome (where it was stored: [`Appended::placement`]). A duplicate
    /// is not delivered again; `reply` gets the original placement. One the
    /// store refused (an event its target does not allow, an unknown file)
    /// gets why. The outcome itself, not a placement made of it: an ack
    /// reads the conversation's name where it is, with no copy per message.
    pub(crate) fn submit(
        self: &Arc<Self>,
        message: NewMessage,
        sender_session: Option<u64>,
        reply: impl FnOnce(Result<Appended, StoreError>) + Send + 'static,
    ) {
        let core = self.clone();
        let push_to = push::recipients(self, &message);
        let pushing = !push_to.is_empty();
        self.store.append(
            message,
            push_to,
            Box::new(move |outcome| {
                if pushing {
                    core.pushes.wake();
                }
                if let Ok(Appended::New(stored)) = &outcome {
                    // Encoded once; every recipient session gets the same bytes.
                    let frame = Utf8Bytes::from(msg_frame(stored));
                    let m = &stored.message;
                    // The conversation's two members, not sender and recipient: a
                    // host's delete is sent by neither.
                    let group = m.group.as_deref().and_then(|g| Some((g, core.groups.get(g)?)));
                    let audience = match (m.to.as_ref().and(Conversation::parse(&m.conv)), &group) {
                        (Some(Conversation::Direct(a, b)), _) => Some(Audience::Direct(a, b)),
                        (_, Some((name, group))) => Some(Audience::Group(name, &group.members)),
                        _ => None,
                    };
                    let delivered = audience.map_or(0, |audience| {
                        core.router
                            .fanout(&m.conv, stored.seq, &frame, audience, sender_session)
                    });
                    core.metrics.messages_in.inc();
                    core.metrics.messages_out.inc_by(delivered as u64);
                    if core.config.events.messages {
                        core.events.post(Event::Message {
                            from: m.from.clone(),
                            frame,
                        });
                    }
                }
                reply(outcome);
            }),
        );
    }
}
