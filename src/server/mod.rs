//! The engine: a [`Server`] and its lifecycle.
//!
//! `new` validates, `start` builds the server's own tokio runtime and its
//! dispatcher thread and binds, `stop` closes every session, drains events to
//! the host and joins everything. A server starts once.

mod accept;
mod amendments;
pub(crate) mod auth;
mod connection;
pub(crate) mod core;
pub(crate) mod files;
pub(crate) mod frames;
pub(crate) mod handshake;
pub(crate) mod http;
mod keepalive;
pub(crate) mod membership;
pub(crate) mod metrics;
pub(crate) mod msg_frames;
pub(crate) mod push;
mod rate_limit;
pub(crate) mod reader;
mod receipts;
mod requests;
pub(crate) mod search;
mod session;
mod socket;
mod write_order;
mod writer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use tower_http::services::ServeDir;

use self::connection::Frontend;
use self::core::Core;
use self::core::Stats;
use self::files::FileShelf;
use self::membership::{Actor, Refused};
use self::metrics::Metrics;
use self::msg_frames::msg_frame;
use crate::config::Config;
use crate::error::Error;
use crate::host::dispatcher::Dispatcher;
use crate::host::gate::{CallbackGate, in_callback_of};
use crate::host::poller::EventPoller;
use crate::host::{Event, Host, log_layer};
use crate::protocol::{
    Conversation, close, direct_conv, group_conv, host_body, is_valid_id, is_valid_request_id, now_ms,
};
use crate::router::cluster::Cluster;
use crate::router::{Groups, LocalRouter, Presence, Router};
use crate::store::amend::Refused as StoreRefused;
use crate::store::{MessageKind, NewMessage, Placement, SearchScope, StoredMessage};

/// The most messages one history call returns.
pub(crate) const MAX_HISTORY_LIMIT: usize = 1000;

/// How long `stop` waits for sessions to say goodbye before cutting them off.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// An IM server. All methods take `&self` and may be called from any thread.
pub struct Server {
    id: u64,
    config: Config,
    state: RwLock<State>,
    /// Held for the whole of a stop, so a second stop returns only when the
    /// first one has finished.
    stopping: Mutex<()>,
    /// The host's side of the event queue, in poll delivery.
    poller: Option<Arc<EventPoller>>,
}

enum State {
    Created { host: Option<Arc<dyn Host>> },
    Running(Box<Running>),
    Stopped,
}

struct Running {
    core: Arc<Core>,
    runtime: Runtime,
    dispatcher: Dispatcher,
    stopping: watch::Sender<bool>,
    alive: Sender<()>,
    all_ended: Mutex<Receiver<()>>,
    local_addr: SocketAddr,
    logs: tracing::Dispatch,
}

impl Server {
    /// A server for `config`, not yet started.
    pub fn new(config: Config) -> Result<Server, Error> {
        config.validate()?;
        let poller = EventPoller::for_delivery(config.events.delivery)?;
        Ok(Server {
            id: crate::host::gate::next_owner_id(),
            config,
            state: RwLock::new(State::Created { host: None }),
            stopping: Mutex::new(()),
            poller,
        })
    }

    /// Poll delivery (`events.delivery: "poll"`): the descriptor to watch for
    /// reading; it is readable while events may wait, and for good once the
    /// server has stopped. Valid until the server is dropped.
    pub fn event_fd(&self) -> Result<std::os::fd::RawFd, Error> {
        Ok(EventPoller::of(&self.poller)?.fd())
    }

    /// Poll delivery: takes up to `max` waiting events, in order, without
    /// blocking (none when none waits). Events arrive as the callbacks would
    /// get them, log records as [`Event::Log`].
    pub fn poll_events(&self, max: usize) -> Result<Vec<Event>, Error> {
        EventPoller::of(&self.poller)?.take(max)
    }

    /// Sets the host that receives events and logs (and authenticates, in
    /// auth mode `callback`). Only before `start`; a host set earlier is released.
    pub fn set_host(&self, host: Arc<dyn Host>) -> Result<(), Error> {
        let previous = match &mut *self.write_state() {
            State::Created { host: slot } => slot.replace(host),
            State::Running(_) => return Err(Error::AlreadyStarted),
            State::Stopped => return Err(Error::Stopped),
        };
        drop(previous);
        Ok(())
    }

    /// Starts the runtime, the dispatcher and the listener.
    pub fn start(&self) -> Result<(), Error> {
        let mut state = self.write_state();
        let host = match &mut *state {
            State::Created { host } => host.take(),
            State::Running(_) => return Err(Error::AlreadyStarted),
            State::Stopped => return Err(Error::Stopped),
        };
        let answers_tokens = host.as_ref().is_some_and(|h| h.has_authenticate());
        if matches!(self.config.auth, crate::config::AuthConfig::Callback {}) && !answers_tokens {
            *state = State::Created { host };
            return Err(Error::InvalidConfig(
                "auth.mode: \"callback\" needs a host with an authenticate callback".into(),
            ));
        }
        let gate = Arc::new(CallbackGate::new(self.id, host));
        match self.launch(gate.clone()) {
            Ok(running) => {
                *state = State::Running(Box::new(running));
                Ok(())
            }
            Err(e) => {
                *state = State::Created { host: gate.close() };
                Err(e)
            }
        }
    }

    fn launch(&self, gate: Arc<CallbackGate>) -> Result<Running, Error> {
        let config = &self.config;
        let tls = config.tls.as_ref().map(crate::tls::server_acceptor).transpose()?;
        let files = config.web_root.as_deref().map(web_root).transpose()?;
        let shelf = FileShelf::open(&config.files)
            .map_err(|e| Error::Io(format!("files.dir {}: {e}", config.files.dir.as_deref().unwrap_or(""))))?;
        let metrics = Metrics::default();
        let store = crate::store::open(&config.store, (&config.messages).into(), metrics.commit_observer())
            .map_err(|e| Error::Store(e.0))?;
        let groups = Arc::new(Groups::load(store.groups().map_err(|e| Error::Store(e.0))?));
        let presence = Arc::new(Presence::default());
        let dispatcher = Dispatcher::for_host(gate.clone(), self.poller.as_ref(), config.events.queue_capacity, {
            let dropped = metrics.events_dropped.clone();
            Box::new(move || {
                dropped.inc();
            })
        })?;
        let logs = log_layer::dispatch_for(dispatcher.queue().clone(), config.log_level);
        let runtime = match crate::runtime::build(config.workers, "imbed-worker", &logs) {
            Ok(runtime) => runtime,
            Err(e) => {
                dispatcher.shutdown();
                return Err(Error::Io(format!("could not start the runtime: {e}")));
            }
        };
        let bound = {
            let _entered = runtime.enter();
            bind(config.listen_addr())
        };
        let (listener, local_addr) = match bound {
            Ok(bound) => bound,
            Err(e) => {
                runtime.shutdown_background();
                dispatcher.shutdown();
                return Err(e);
            }
        };
        let (stopping, stopping_rx) = watch::channel(false);
        let router: Arc<dyn Router> = match &config.cluster.redis {
            Some(redis) => {
                let _entered = runtime.enter();
                let started = Cluster::start(
                    &config.cluster,
                    redis,
                    store.clone(),
                    groups.clone(),
                    presence.clone(),
                    msg_frame,
                    metrics.cluster.clone(),
                );
                match started {
                    Ok(cluster) => Arc::new(cluster),
                    Err(e) => {
                        runtime.shutdown_background();
                        dispatcher.shutdown();
                        store.close();
                        return Err(Error::InvalidConfig(e));
                    }
                }
            }
            None => Arc::new(LocalRouter::new()),
        };
        let core = Arc::new(Core::new(
            (config.clone(), shelf),
            store,
            (router, groups, presence),
            metrics,
            dispatcher.queue().clone(),
            gate,
            stopping_rx,
        ));
        let (alive, all_ended) = channel();
        let frontend = Arc::new(Frontend {
            core: core.clone(),
            tls,
            files,
        });
        runtime.spawn(accept::accept_loop(frontend, listener, alive.clone()));
        if config.push.enabled {
            runtime.spawn(push::run(core.clone()));
        }
        runtime.spawn(files::collect(core.clone()));
        runtime.spawn(keepalive::run(core.clone()));
        tracing::dispatcher::with_default(&logs, || {
            tracing::info!(address = %local_addr, "listening");
        });
        Ok(Running {
            core,
            runtime,
            dispatcher,
            stopping,
            alive,
            all_ended: Mutex::new(all_ended),
            local_addr,
            logs,
        })
    }

    /// The address the server is bound to (its port, when configured with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        match &*self.read_state() {
            State::Running(running) => Ok(running.local_addr),
            State::Created { .. } => Err(Error::NotStarted),
            State::Stopped => Err(Error::Stopped),
        }
    }

    /// Sends a direct message from `from` (any id the host chooses) to `to`,
    /// and returns once it is stored. `client_id` is the idempotency key: a
    /// second send with the same `from` and `client_id` stores nothing and
    /// returns the first placement. Without one, the engine makes a unique id.
    pub fn send(&self, from: &str, to: &str, body_json: &str, client_id: Option<&str>) -> Result<Placement, Error> {
        let core = self.running_core()?;
        check_ids(&[("from", from), ("to", to)])?;
        let message = host_message(&core, from, direct_conv(from, to), Some(to), None, body_json, client_id)?;
        submit_and_wait(&core, message)
    }

    /// Sends to a group as `from` (any id the host chooses; it need not be a
    /// member), and returns once it is stored. [`Error::NotFound`] when the
    /// group does not exist. `client_id` as for [`Server::send`].
    pub fn send_group(
        &self,
        from: &str,
        group: &str,
        body_json: &str,
        client_id: Option<&str>,
    ) -> Result<Placement, Error> {
        let core = self.running_core()?;
        check_ids(&[("from", from), ("group", group)])?;
        if core.groups.get(group).is_none() {
            return Err(Error::NotFound(format!("no group {group}")));
        }
        let message = host_message(&core, from, group_conv(group), None, Some(group), body_json, client_id)?;
        submit_and_wait(&core, message)
    }

    /// Creates `group`, or sets whether it is closed (closed groups refuse
    /// `join`; the host adds their members). Closing an open group removes
    /// all its members, who are told: anyone could have joined it before.
    pub fn create_group(&self, group: &str, closed: bool) -> Result<(), Error> {
        let core = self.running_core()?;
        check_ids(&[("group", group)])?;
        core.create_group(group, closed).map_err(refused)
    }

    /// Whether `group` is closed, and its members, sorted.
    /// [`Error::NotFound`] when there is no such group.
    pub fn members(&self, group: &str) -> Result<GroupMembers, Error> {
        let core = self.running_core()?;
        check_ids(&[("group", group)])?;
        let found = core
            .groups
            .get(group)
            .ok_or_else(|| Error::NotFound(format!("no group {group}")))?;
        Ok(GroupMembers {
            closed: found.closed,
            members: found.members.to_vec(),
        })
    }

    /// Adds `user` to `group`, closed or not; members are told.
    pub fn add_member(&self, group: &str, user: &str) -> Result<(), Error> {
        let core = self.running_core()?;
        check_ids(&[("group", group), ("user", user)])?;
        core.join(group, user, Actor::Host).map(drop).map_err(refused)
    }

    /// Removes `user` from `group`; members (and the user) are told.
    pub fn remove_member(&self, group: &str, user: &str) -> Result<(), Error> {
        let core = self.running_core()?;
        check_ids(&[("group", group), ("user", user)])?;
        core.leave(group, user, Actor::Host).map(drop).map_err(refused)
    }

    /// Closes every session of `user` with code 4001 ("kicked"); returns how many.
    pub fn kick(&self, user: &str) -> Result<usize, Error> {
        let core = self.running_core()?;
        check_ids(&[("user", user)])?;
        let sessions = core.router.sessions_of(user);
        for session in &sessions {
            session.outbox.close(close::KICKED, "kicked");
        }
        Ok(sessions.len())
    }

    /// The users with at least one session, sorted.
    pub fn online(&self) -> Result<Vec<Arc<str>>, Error> {
        let mut users = self.running_core()?.router.online_users();
        users.sort();
        Ok(users)
    }

    /// Every device with a session now, by user then device, with its
    /// state (`foreground` when any of its sessions is) and its sessions.
    pub fn devices(&self) -> Result<Vec<OnlineDevice>, Error> {
        let core = self.running_core()?;
        let mut devices: BTreeMap<(Arc<str>, Arc<str>), OnlineDevice> = BTreeMap::new();
        for user in core.router.online_users() {
            for session in core.router.sessions_of(&user) {
                let background = session.background.load(std::sync::atomic::Ordering::Relaxed);
                let entry = devices
                    .entry((user.clone(), session.device.clone()))
                    .or_insert_with(|| OnlineDevice {
                        user: user.clone(),
                        device: session.device.clone(),
                        foreground: false,
                        sessions: 0,
                    });
                entry.foreground |= !background;
                entry.sessions += 1;
            }
        }
        Ok(devices.into_values().collect())
    }

    /// Connections, users online, and messages stored and delivered since start.
    pub fn stats(&self) -> Result<Stats, Error> {
        Ok(self.running_core()?.stats())
    }

    /// Up to `limit` (1 to 1000) stored messages of `conv`
    /// below `before` (the newest when `None`), oldest first. Blocking (it
    /// may read the database): async callers wrap it in `spawn_blocking`.
    pub fn history(&self, conv: &str, before: Option<u64>, limit: usize) -> Result<Vec<Arc<StoredMessage>>, Error> {
        let core = self.running_core()?;
        if Conversation::parse(conv).is_none() {
            return Err(Error::InvalidArgument(
                "conv must be dm:<a>:<b> (sorted) or g:<group>".into(),
            ));
        }
        if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "limit must be between 1 and {MAX_HISTORY_LIMIT}"
            )));
        }
        core.store
            .history(conv, before, limit, usize::MAX)
            .map_err(|e| Error::Store(e.0))
    }

    /// Deletes message `seq` of `conv` for everyone, for moderation: an event
    /// of the conversation sent as `by` (any id the host chooses), like a
    /// sender's own delete (docs/PROTOCOL.md, "Deletes"), and returns once it
    /// is stored. [`Error::NotFound`] when the conversation has no such
    /// message; [`Error::InvalidArgument`] when it is an event or deleted.
    pub fn delete(&self, by: &str, conv: &str, seq: u64) -> Result<Placement, Error> {
        let core = self.running_core()?;
        check_ids(&[("by", by)])?;
        let (to, group) = amendments::addressed(conv, by)
            .ok_or_else(|| Error::InvalidArgument("conv must be dm:<a>:<b> (sorted) or g:<group>".into()))?;
        if seq == 0 {
            return Err(Error::InvalidArgument("seq must be 1 or more".into()));
        }
        let message = NewMessage {
            conv: conv.to_owned(),
            from: by.into(),
            to,
            group,
            client_id: core.unique_name("host-delete", core.next_number()),
            body: crate::store::amend::null_body(),
            ts: now_ms(),
            kind: MessageKind::Delete,
            target: Some(seq),
            files: Vec::new(),
            by_host: true,
        };
        submit_and_wait(&core, message)
    }

    /// Up to `limit` (1 to 100) messages with every word of `query`, in
    /// `conv` or (`None`) in every conversation, newest first, from the
    /// cursor `after` of an earlier page (docs/PROTOCOL.md, "Search").
    /// Blocking, like [`Server::history`].
    pub fn search(
        &self,
        conv: Option<&str>,
        query: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SearchResults, Error> {
        let core = self.running_core()?;
        if conv.is_some_and(|conv| Conversation::parse(conv).is_none()) {
            return Err(Error::InvalidArgument(
                "conv must be dm:<a>:<b> (sorted) or g:<group>".into(),
            ));
        }
        let max = search::SEARCH_LIMIT.1 as usize;
        if !(1..=max).contains(&limit) {
            return Err(Error::InvalidArgument(format!("limit must be between 1 and {max}")));
        }
        let wanted = search::query_terms(query).map_err(Error::InvalidArgument)?;
        let after = search::cursor(after).map_err(Error::InvalidArgument)?;
        let scope = conv.map_or(SearchScope::All, SearchScope::Conv);
        let page = core
            .store
            .search(scope, &wanted, after.as_deref(), limit, usize::MAX)
            .map_err(|e| Error::Store(e.0))?;
        Ok(SearchResults {
            messages: page.results,
            next: page.next,
        })
    }

    /// The uploaded file `file_id`: its size, type and where its bytes are
    /// ([`Error::NotFound`] for none; [`Error::InvalidArgument`] when the
    /// server has no `files.dir`). Blocking.
    pub fn file(&self, file_id: &str) -> Result<StoredFile, Error> {
        let core = self.running_core()?;
        let shelf = core
            .files
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("files are off: the configuration has no files.dir".into()))?;
        let record = match files::is_file_id(file_id) {
            true => core.store.file(file_id, None).map_err(|e| Error::Store(e.0))?,
            false => None,
        };
        let record = record.ok_or_else(|| Error::NotFound(format!("no file {file_id}")))?;
        Ok(StoredFile {
            path: shelf.path_of(file_id),
            size: record.size,
            content_type: record.content_type,
        })
    }

    /// Stops the server: no new connections, every session closed with 1001,
    /// remaining events delivered, the host released; then returns. Stopping
    /// a stopped server is fine. From inside one of this server's callbacks
    /// it fails with [`Error::InCallback`], since it would wait for itself.
    pub fn stop(&self) -> Result<(), Error> {
        if in_callback_of(self.id) {
            return Err(Error::InCallback);
        }
        let _one_at_a_time = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::replace(&mut *self.write_state(), State::Stopped);
        let running = match previous {
            State::Running(running) => running,
            // A host set but never started is released here, on the caller's thread.
            State::Created { host } => {
                drop(host);
                return Ok(());
            }
            State::Stopped => return Ok(()),
        };
        // On a thread of its own: tokio refuses to shut a runtime down from
        // inside another runtime, and a Rust host may well call stop from one.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("imbed-stop".into())
                .spawn_scoped(scope, || running.shut_down())
                .map(|handle| {
                    // Re-raised here so the caller's panic boundary reports it.
                    if let Err(panic) = handle.join() {
                        std::panic::resume_unwind(panic);
                    }
                })
                .map_err(|e| Error::Io(format!("could not start the stopping thread: {e}")))
        })?;
        Ok(())
    }

    fn running_core(&self) -> Result<Arc<Core>, Error> {
        match &*self.read_state() {
            State::Running(running) => Ok(running.core.clone()),
            State::Created { .. } => Err(Error::NotStarted),
            State::Stopped => Err(Error::Stopped),
        }
    }

    /// Runs `log` with the server's log dispatch, so what it logs on the
    /// host's thread reaches the host like the engine's own records.
    pub(crate) fn logging(&self, log: impl FnOnce()) {
        match &*self.read_state() {
            State::Running(running) => tracing::dispatcher::with_default(&running.logs, log),
            _ => log(),
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A device with a session, as [`Server::devices`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineDevice {
    /// The user.
    pub user: Arc<str>,
    /// The device.
    pub device: Arc<str>,
    /// Whether one of its sessions is in the foreground (none said `background`).
    pub foreground: bool,
    /// Its open sessions.
    pub sessions: usize,
}

/// A group as [`Server::members`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembers {
    /// Closed groups refuse `join`; only the host adds members.
    pub closed: bool,
    /// The members, sorted.
    pub members: Vec<Arc<str>>,
}

fn check_ids(ids: &[(&str, &str)]) -> Result<(), Error> {
    match ids.iter().find(|(_, id)| !is_valid_id(id)) {
        Some((name, _)) => Err(Error::InvalidArgument(format!(
            "{name} must be 1 to 64 characters of [A-Za-z0-9_.@-]"
        ))),
        None => Ok(()),
    }
}

fn refused(r: Refused) -> Error {
    match r {
        Refused::NotFound => Error::NotFound("no such group".into()),
        Refused::Forbidden => Error::InvalidArgument("the group is closed".into()),
        Refused::Store(m) => Error::Store(m),
    }
}

/// A page of [`Server::search`].
#[derive(Debug)]
pub struct SearchResults {
    /// The messages found, newest first, in their current state.
    pub messages: Vec<Arc<StoredMessage>>,
    /// When more match: the cursor of the next page.
    pub next: Option<String>,
}

/// An uploaded file, as [`Server::file`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Where its bytes are.
    pub path: std::path::PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its content type, taken from its bytes.
    pub content_type: String,
}

/// A message the host sends, checked.
fn host_message(
    core: &Core,
    from: &str,
    conv: String,
    to: Option<&str>,
    group: Option<&str>,
    body_json: &str,
    client_id: Option<&str>,
) -> Result<NewMessage, Error> {
    let client_id = match client_id {
        Some(id) if is_valid_request_id(id) => id.to_owned(),
        Some(_) => return Err(Error::InvalidArgument("client_id must be 1 to 64 characters".into())),
        None => core.unique_name("host", core.next_number()),
    };
    let body = host_body(body_json).map_err(Error::InvalidArgument)?;
    Ok(NewMessage {
        conv,
        from: from.into(),
        to: to.map(str::to_owned),
        group: group.map(str::to_owned),
        files: files::referenced(&body).map_err(Error::InvalidArgument)?,
        client_id,
        body,
        ts: now_ms(),
        kind: MessageKind::Message,
        target: None,
        by_host: true,
    })
}

/// Stores and delivers `message`, waiting for the store.
fn submit_and_wait(core: &Arc<Core>, message: NewMessage) -> Result<Placement, Error> {
    match crate::store::wait_for(|done| core.submit(message, None, |outcome| done(outcome.map(|a| a.placement())))) {
        Ok(Ok(placement)) => Ok(placement),
        Ok(Err(StoreRefused::NotFound(why))) => Err(Error::NotFound(why)),
        Ok(Err(StoreRefused::Forbidden(why) | StoreRefused::Invalid(why))) => Err(Error::InvalidArgument(why)),
        Err(e) => Err(Error::Store(e.0)),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !in_callback_of(self.id) {
            let _ = self.stop();
        }
    }
}

impl Running {
    fn shut_down(self) {
        let Running {
            core,
            runtime,
            dispatcher,
            stopping,
            alive,
            all_ended,
            logs,
            ..
        } = self;
        tracing::dispatcher::with_default(&logs, || tracing::info!("stopping"));
        let _ = stopping.send(true);
        core.router.close_all(close::GOING_AWAY, "server stopping");
        drop(alive);
        wait_for_connections(&all_ended.into_inner().unwrap_or_else(|p| p.into_inner()), STOP_GRACE);
        core.router.stop();
        runtime.shutdown_timeout(Duration::from_secs(1));
        // The writer finishes its queue first, so the events of those last
        // messages still reach the host.
        core.store.close();
        let gate = core.gate.clone();
        drop(core);
        dispatcher.shutdown();
        // Last: callbacks in progress finish, then the host's last reference drops here.
        drop(gate.close());
    }
}

/// Waits until every connection task has dropped its `alive` sender, or `grace` passes.
fn wait_for_connections(all_ended: &Receiver<()>, grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match all_ended.recv_timeout(left) {
            Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => return,
            Ok(()) => {}
        }
    }
}

/// The files under `path`, which must be a directory.
fn web_root(path: &str) -> Result<ServeDir, Error> {
    if !std::path::Path::new(path).is_dir() {
        return Err(Error::InvalidConfig(format!("web_root: {path} is not a directory")));
    }
    Ok(ServeDir::new(path))
}

/// Binds with `SO_REUSEADDR`, so a restarted server can take its port back
/// while the old connections linger in TIME_WAIT.
fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), Error> {
    let could_not = |e: std::io::Error| Error::Io(format!("could not listen on {addr}: {e}"));
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(could_not)?;
    socket.set_reuseaddr(true).map_err(could_not)?;
    socket.bind(addr).map_err(could_not)?;
    let listener = socket.listen(1024).map_err(could_not)?;
    let local_addr = listener.local_addr().map_err(could_not)?;
    Ok((listener, local_addr))
}
