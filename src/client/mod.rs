//! The client role: a resilient connection to an imbed server, for hosts
//! that are apps rather than servers.
//!
//! It reconnects by itself (exponential backoff with jitter), notices a
//! dead connection, keeps every message in an outbox until the server acks
//! it (re-sending in order after each reconnect; the server dedupes by id),
//! and syncs from its cursors after every connect, so the host sees every
//! message exactly once, in order per conversation. Events reach the host
//! exactly as the server's do: on one dispatcher thread, in order.

pub(crate) mod connection;
pub(crate) mod state;
mod upload;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::watch;

pub use self::connection::Hint;
use self::connection::{Command, Shared};
use self::state::{ClientState, Pending};
use crate::config::ClientConfig;
use crate::error::Error;
use crate::host::dispatcher::Dispatcher;
use crate::host::gate::{CallbackGate, in_callback_of, next_owner_id};
use crate::host::poller::EventPoller;
use crate::host::{Event, Host, log_layer};
use crate::protocol::{host_body, is_valid_id};

/// A client. All methods take `&self` and may be called from any thread.
pub struct Client {
    id: u64,
    shared: Arc<Shared>,
    id_prefix: String,
    next_message: AtomicU64,
    commands: Mutex<Option<UnboundedSender<Command>>>,
    lifecycle: RwLock<Lifecycle>,
    /// Held for the whole of a stop, so a second stop returns only when the
    /// first one has finished.
    stopping: Mutex<()>,
    /// The host's side of the event queue, in poll delivery.
    poller: Option<Arc<EventPoller>>,
}

enum Lifecycle {
    Created { host: Option<Arc<dyn Host>> },
    Running(Box<Running>),
    Stopped,
}

struct Running {
    runtime: Runtime,
    connection: tokio::task::JoinHandle<()>,
    dispatcher: Dispatcher,
    gate: Arc<CallbackGate>,
    stopping: watch::Sender<bool>,
}

impl Client {
    /// A client for `config`, not yet connecting. Opens the state file, so
    /// messages queued before a restart are there again.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let tls = crate::tls::client_connector(config.ca_path.as_deref())?;
        let state = ClientState::open(&config.state_path)?;
        let id_prefix = state.id_prefix()?;
        // The id prefix is made up once per state file, like a device.
        let device = config.device.clone().unwrap_or_else(|| format!("c-{id_prefix}"));
        let next_message = AtomicU64::new(state.next_id_number());
        let poller = EventPoller::for_delivery(config.events.delivery)?;
        Ok(Client {
            id: next_owner_id(),
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(state),
                connected: AtomicBool::new(false),
                counter: AtomicU64::new(1),
                tls,
                device,
                me: std::sync::OnceLock::new(),
            }),
            id_prefix,
            next_message,
            commands: Mutex::new(None),
            lifecycle: RwLock::new(Lifecycle::Created { host: None }),
            stopping: Mutex::new(()),
            poller,
        })
    }

    /// Poll delivery (`events.delivery: "poll"`): the descriptor to watch for
    /// reading; it is readable while events may wait, and for good once the
    /// client has stopped. Valid until the client is dropped.
    pub fn event_fd(&self) -> Result<std::os::fd::RawFd, Error> {
        Ok(EventPoller::of(&self.poller)?.fd())
    }

    /// Poll delivery: takes up to `max` waiting events, in order, without
    /// blocking (none when none waits). An event counts as handled when the
    /// host polls again or stops the client: only then may the client's
    /// cursor pass it. Log records arrive as [`Event::Log`].
    pub fn poll_events(&self, max: usize) -> Result<Vec<Event>, Error> {
        EventPoller::of(&self.poller)?.take(max)
    }

    /// Sets the host that receives events and logs. Only before `start`.
    pub fn set_host(&self, host: Arc<dyn Host>) -> Result<(), Error> {
        let previous = match &mut *self.lifecycle() {
            Lifecycle::Created { host: slot } => slot.replace(host),
            Lifecycle::Running(_) => return Err(Error::AlreadyStarted),
            Lifecycle::Stopped => return Err(Error::Stopped),
        };
        drop(previous);
        Ok(())
    }

    /// Starts connecting, in the background, for as long as the client runs.
    pub fn start(&self) -> Result<(), Error> {
        let mut lifecycle = self.lifecycle();
        let host = match &mut *lifecycle {
            Lifecycle::Created { host } => host.take(),
            Lifecycle::Running(_) => return Err(Error::AlreadyStarted),
            Lifecycle::Stopped => return Err(Error::Stopped),
        };
        let gate = Arc::new(CallbackGate::new(self.id, host));
        let config = &self.shared.config;
        let dispatcher = Dispatcher::for_host(
            gate.clone(),
            self.poller.as_ref(),
            config.events.queue_capacity,
            // The client role never drops: it waits for room.
            Box::new(|| {}),
        )?;
        let logs = log_layer::dispatch_for(dispatcher.queue().clone(), config.log_level);
        let runtime = match crate::runtime::build(1, "imbed-client", &logs) {
            Ok(runtime) => runtime,
            Err(e) => {
                dispatcher.shutdown();
                drop(gate.close());
                return Err(Error::Io(format!("could not start the runtime: {e}")));
            }
        };
        let (commands, queue) = unbounded_channel();
        let (stopping, stopping_rx) = watch::channel(false);
        let connection = runtime.spawn(connection::run(
            self.shared.clone(),
            dispatcher.queue().clone(),
            queue,
            stopping_rx,
        ));
        *self.commands.lock().unwrap_or_else(|p| p.into_inner()) = Some(commands);
        *lifecycle = Lifecycle::Running(Box::new(Running {
            runtime,
            connection,
            dispatcher,
            gate,
            stopping,
        }));
        Ok(())
    }

    /// Queues a direct message to `to` and returns its client id at once.
    /// It is sent now if connected, and re-sent after every reconnect until
    /// the server acks it (an `ack` event with this id).
    pub fn send(&self, to: &str, body_json: &str) -> Result<String, Error> {
        self.enqueue("to", to, body_json)
    }

    /// Queues a message to the group `group`; as [`Client::send`].
    pub fn send_group(&self, group: &str, body_json: &str) -> Result<String, Error> {
        self.enqueue("group", group, body_json)
    }

    fn enqueue(&self, field: &str, target: &str, body_json: &str) -> Result<String, Error> {
        if matches!(*self.lifecycle(), Lifecycle::Stopped) {
            return Err(Error::Stopped);
        }
        if !is_valid_id(target) {
            return Err(Error::InvalidArgument(format!(
                "{field} must be 1 to 64 characters of [A-Za-z0-9_.@-]"
            )));
        }
        let body = host_body(body_json).map_err(Error::InvalidArgument)?;
        let id = format!(
            "{}-{}",
            self.id_prefix,
            self.next_message.fetch_add(1, Ordering::Relaxed)
        );
        let frame = serde_json::json!({"type": "send", "id": id, field: target, "body": body}).to_string();
        self.shared.state().enqueue(Pending { id: id.clone(), frame })?;
        self.command(Command::Transmit);
        Ok(id)
    }

    /// Sends a request frame, adding an `id` when it has none, and returns
    /// the id. The frames that store something (`send`, with `reply_to` for
    /// a reply, and the events `edit`, `delete`, `react` and `unreact`) go
    /// through the outbox like [`Client::send`]: queued while disconnected,
    /// sent again until the server acks them, an `ack` or `send_failed` event
    /// with the id. Every other request (join, leave, watch, unwatch, typing,
    /// read, history, members, conversations, search…) needs a connection
    /// ([`Error::NotConnected`] without one); its reply arrives as a `frame`
    /// event with the id.
    pub fn request(&self, frame_json: &str) -> Result<String, Error> {
        #[derive(Deserialize)]
        struct Kind {
            #[serde(rename = "type")]
            kind: String,
        }
        let mut frame: serde_json::Map<String, serde_json::Value> = serde_json::from_str(frame_json)
            .map_err(|e| Error::InvalidArgument(format!("the request is not a JSON object: {e}")))?;
        let Kind { kind } = serde_json::from_value(serde_json::Value::Object(frame.clone()))
            .map_err(|_| Error::InvalidArgument("the request needs a string type".into()))?;
        if matches!(kind.as_str(), "sync" | "auth") {
            return Err(Error::InvalidArgument(format!("{kind} is managed by the client")));
        }
        let stored = matches!(kind.as_str(), "send" | "edit" | "delete" | "react" | "unreact");
        if stored && matches!(*self.lifecycle(), Lifecycle::Stopped) {
            return Err(Error::Stopped);
        }
        if !stored
            && (!matches!(*self.lifecycle(), Lifecycle::Running(_)) || !self.shared.connected.load(Ordering::Relaxed))
        {
            return Err(Error::NotConnected);
        }
        let id = match frame.get("id").and_then(|id| id.as_str()) {
            // The server would answer a bad id without it, and a queued frame
            // would then never settle.
            Some(id) if !crate::protocol::is_valid_request_id(id) => {
                return Err(Error::InvalidArgument(
                    "id must be a string of 1 to 64 characters".into(),
                ));
            }
            Some(id) => id.to_owned(),
            None if stored => format!(
                "{}-{}",
                self.id_prefix,
                self.next_message.fetch_add(1, Ordering::Relaxed)
            ),
            None => format!("r-{}", self.shared.counter.fetch_add(1, Ordering::Relaxed)),
        };
        frame.insert("id".into(), id.clone().into());
        let frame = serde_json::Value::Object(frame).to_string();
        if stored {
            self.shared.state().enqueue(Pending { id: id.clone(), frame })?;
            self.command(Command::Transmit);
        } else {
            self.command(Command::Request(frame));
        }
        Ok(id)
    }

    /// Uploads the file at `path` to the server (`POST /files`, beside the
    /// WebSocket, with the same token and TLS trust) and returns the server's
    /// answer, `{"id":…,"size":…,"type":…}`; a message then refers to the
    /// file by its id (docs/PROTOCOL.md, "Files"). `content_type` is a hint
    /// the server uses only when the bytes do not say. Blocks until the
    /// server answers; needs no WebSocket connection. A refusal (too large,
    /// over quota, no files on the server, an unreadable `path`) is
    /// [`Error::InvalidArgument`]; a server that cannot be reached, [`Error::Io`].
    pub fn upload(&self, path: &std::path::Path, content_type: Option<&str>) -> Result<String, Error> {
        if matches!(*self.lifecycle(), Lifecycle::Stopped) {
            return Err(Error::Stopped);
        }
        upload::upload(&self.shared, path, content_type)
    }

    /// Passes a hint about the app's situation to the connection.
    pub fn hint(&self, hint: Hint) -> Result<(), Error> {
        match *self.lifecycle() {
            Lifecycle::Running(_) => {
                self.command(Command::Hint(hint));
                Ok(())
            }
            Lifecycle::Created { .. } => Err(Error::NotStarted),
            Lifecycle::Stopped => Err(Error::Stopped),
        }
    }

    /// Closes the connection, delivers the remaining events, releases the
    /// host, and returns. Idempotent; refused from inside a callback.
    pub fn stop(&self) -> Result<(), Error> {
        if in_callback_of(self.id) {
            return Err(Error::InCallback);
        }
        let _one_at_a_time = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::replace(&mut *self.lifecycle(), Lifecycle::Stopped);
        self.commands.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Lifecycle::Running(running) = previous else {
            return Ok(());
        };
        // On a thread of its own, as for the server: the caller may be async.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("imbed-stop".into())
                .spawn_scoped(scope, || {
                    let Running {
                        runtime,
                        connection,
                        dispatcher,
                        gate,
                        stopping,
                    } = *running;
                    let _ = stopping.send(true);
                    dispatcher.stopping();
                    // Let the connection close politely and report "stopped".
                    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(2), connection).await });
                    runtime.shutdown_timeout(Duration::from_secs(1));
                    dispatcher.shutdown();
                    drop(gate.close());
                })
                .map(|handle| {
                    if let Err(panic) = handle.join() {
                        std::panic::resume_unwind(panic);
                    }
                })
                .map_err(|e| Error::Io(format!("could not start the stopping thread: {e}")))
        })
    }

    fn command(&self, command: Command) {
        if let Some(commands) = self.commands.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = commands.send(command);
        }
    }

    fn lifecycle(&self) -> std::sync::RwLockWriteGuard<'_, Lifecycle> {
        self.lifecycle.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !in_callback_of(self.id) {
            let _ = self.stop();
        }
    }
}
