//! The node's three Redis tasks: the publisher, the subscriber and the
//! heartbeat.
//!
//! Every node publishes to and subscribes to one channel. Each node's
//! presence is a hash of its users (`imbed:online:<node>`, user → whether
//! one of its sessions is looking) and a key that says it is alive
//! (`imbed:node:<node>`), which expires unless the node's heartbeat renews
//! it: a killed node's users go offline everywhere within the TTL.
//!
//! The subscriber checks its own subscription: the heartbeat publishes a
//! probe, and a subscription that has not heard one for three heartbeats is
//! dropped and made again (after a Redis failover a subscription can stay
//! open and hear nothing). After each (re)subscription the node announces
//! its users again and reads everyone else's; after a re-subscription it also
//! reloads the groups and reads back, from the store, the messages that
//! Redis did not bring while it was down.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::envelope::{Envelope, Kind, Outgoing};
use super::remote::Change;
use super::sequencer::{Arrival, Recipients};
use super::{Node, recipients_of};
use crate::router::Router;

/// The channel every node publishes to and subscribes to.
const CHANNEL: &str = "imbed:bus";

/// The most items one pipeline publishes.
const MAX_BATCH: usize = 1024;

/// Items queued for Redis beyond which, while Redis is down, the backlog is
/// dropped: the other nodes read what they missed back from the store once
/// they are subscribed again.
const MAX_BACKLOG: usize = 100_000;

/// How long a connection attempt or a command may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait before trying Redis again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

fn node_key(node: &str) -> String {
    format!("imbed:node:{node}")
}

fn online_key(node: &str) -> String {
    format!("imbed:online:{node}")
}

/// Something for the publisher to tell the other nodes.
pub(super) enum Publish {
    /// A stored message.
    Message {
        conv: Arc<str>,
        seq: u64,
        frame: Utf8Bytes,
        recipients: Recipients,
    },
    /// Another frame for a user's sessions.
    Deliver { user: Arc<str>, frame: Utf8Bytes },
    /// A user's presence on this node (its record in Redis too).
    Presence {
        user: Arc<str>,
        online: bool,
        looking: bool,
    },
    /// A member joined or left a group.
    Member {
        group: Arc<str>,
        user: Arc<str>,
        member: bool,
    },
    /// A group was created, opened or closed.
    Closed { group: Arc<str>, closed: bool },
    /// The heartbeat's probe of this node's own subscription.
    Probe,
    /// Writes this node's presence record whole (after Redis lost it).
    Reannounce,
}

/// Adds the commands for `items` to `pipe`. Consecutive frames for several
/// users (a member notice to a group) go out as one envelope.
fn add_commands(node: &Node, items: &[Publish], pipe: &mut redis::Pipeline) {
    let id = &*node.id;
    let mut index = 0;
    while index < items.len() {
        let envelope = match &items[index] {
            Publish::Message {
                conv,
                seq,
                frame,
                recipients,
            } => {
                let (users, group): (Vec<&str>, _) = match recipients {
                    Recipients::Direct(a, b) => (vec![a, b], None),
                    Recipients::Group(g) => (Vec::new(), Some(&**g)),
                };
                Outgoing {
                    conv: Some(conv),
                    seq: Some(*seq),
                    users: &users,
                    group,
                    ..Outgoing::new(id, Kind::Message)
                }
                .encode(Some(frame.as_str()))
            }
            Publish::Deliver { frame, .. } => {
                let mut users = Vec::new();
                while let Some(Publish::Deliver { user, frame: next }) = items.get(index) {
                    if next.as_str().as_ptr() != frame.as_str().as_ptr() || next.len() != frame.len() {
                        break;
                    }
                    users.push(&**user);
                    index += 1;
                }
                index -= 1;
                Outgoing {
                    users: &users,
                    ..Outgoing::new(id, Kind::Deliver)
                }
                .encode(Some(frame.as_str()))
            }
            Publish::Presence { user, online, looking } => {
                if *online {
                    pipe.hset(online_key(id), &**user, u8::from(*looking)).ignore();
                } else {
                    pipe.hdel(online_key(id), &**user).ignore();
                }
                Outgoing {
                    user: Some(user),
                    flag: *online,
                    looking: *looking,
                    ..Outgoing::new(id, Kind::Presence)
                }
                .encode(None)
            }
            Publish::Member { group, user, member } => Outgoing {
                group: Some(group),
                user: Some(user),
                flag: *member,
                ..Outgoing::new(id, Kind::Member)
            }
            .encode(None),
            Publish::Closed { group, closed } => Outgoing {
                group: Some(group),
                flag: *closed,
                ..Outgoing::new(id, Kind::Closed)
            }
            .encode(None),
            Publish::Probe => Outgoing::new(id, Kind::Probe).encode(None),
            Publish::Reannounce => {
                pipe.del(online_key(id)).ignore();
                for (user, looking) in node.local_presence() {
                    pipe.hset(online_key(id), &*user, u8::from(looking)).ignore();
                }
                index += 1;
                continue;
            }
        };
        pipe.publish(CHANNEL, envelope).ignore();
        index += 1;
    }
}

/// Records that Redis failed: `/healthz` says so until it works again.
fn failed(node: &Node, what: &str, error: &dyn std::fmt::Display) {
    node.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
    let why = format!("redis: {what}: {error}");
    let mut failing = node.failing.lock().unwrap_or_else(|p| p.into_inner());
    if failing.as_deref() != Some(why.as_str()) {
        tracing::warn!(error = %why, "cluster");
        *failing = Some(why);
    }
}

async fn connection_manager(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(1);
    client.get_connection_manager_with_config(config).await
}

/// Sleeps `duration`, or less when the node stops; whether it stops.
async fn pause(stopped: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    let stopping = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stopped.wait_for(|stop| *stop) => true,
    };
    stopping || *stopped.borrow()
}

/// Publishes what the node queues, in order, in pipelines; a pipeline that
/// fails is tried again until Redis answers (or the backlog is dropped).
/// When the node stops, it publishes what is queued, then takes the node's
/// presence out of Redis.
pub(super) async fn publish(
    node: Arc<Node>,
    client: redis::Client,
    mut queue: mpsc::UnboundedReceiver<Publish>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connection: Option<ConnectionManager> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let stopping = tokio::select! {
            item = queue.recv() => match item {
                Some(item) => {
                    batch.push(item);
                    false
                }
                None => true,
            },
            _ = stopped.wait_for(|stop| *stop) => true,
        };
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        add_commands(&node, &batch, &mut pipe);
        if stopping {
            pipe.del(online_key(&node.id)).ignore();
            pipe.del(node_key(&node.id)).ignore();
        }
        loop {
            let conn = match connection.as_mut() {
                Some(conn) => conn,
                None => match connection_manager(&client).await {
                    Ok(conn) => connection.insert(conn),
                    Err(e) => {
                        failed(&node, "connecting", &e);
                        if stopping || pause(&mut stopped, RETRY_AFTER).await {
                            return;
                        }
                        drop_backlog(&mut queue);
                        continue;
                    }
                },
            };
            match pipe.query_async::<()>(conn).await {
                Ok(()) => break,
                Err(e) => {
                    failed(&node, "publishing", &e);
                    if stopping || pause(&mut stopped, RETRY_AFTER).await {
                        return;
                    }
                    drop_backlog(&mut queue);
                }
            }
        }
        batch.clear();
        if stopping {
            return;
        }
    }
}

/// While Redis is down, forgets a backlog grown past [`MAX_BACKLOG`].
fn drop_backlog(queue: &mut mpsc::UnboundedReceiver<Publish>) {
    if queue.len() <= MAX_BACKLOG {
        return;
    }
    let mut dropped = 0;
    while queue.try_recv().is_ok() {
        dropped += 1;
    }
    tracing::warn!(
        dropped,
        "cluster: Redis is down; the other nodes will read these from the store"
    );
}

/// Keeps the node subscribed, and applies what arrives.
pub(super) async fn subscribe(node: Arc<Node>, client: redis::Client, mut stopped: watch::Receiver<bool>) {
    let heartbeat = Duration::from_millis(node.config.heartbeat_ms);
    let mut first = true;
    loop {
        let subscribed = async {
            let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            pubsub.subscribe(CHANNEL).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(pubsub)
        };
        let mut pubsub = match subscribed.await {
            Ok(pubsub) => pubsub,
            Err(e) => {
                failed(&node, "subscribing", &e);
                if pause(&mut stopped, RETRY_AFTER).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = recover(&node, &client, !first).await {
            failed(&node, "reading presence", &e);
            if pause(&mut stopped, RETRY_AFTER).await {
                return;
            }
            continue;
        }
        first = false;
        *node.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut last_probe = Instant::now();
        let mut check = tokio::time::interval(heartbeat);
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => {
                        if receive(&node, message.get_payload_bytes()) {
                            last_probe = Instant::now();
                        }
                    }
                    None => {
                        failed(&node, "subscription", &"the connection closed");
                        break;
                    }
                },
                _ = check.tick() => {
                    if last_probe.elapsed() > 3 * heartbeat {
                        failed(&node, "subscription", &"silent: this node's own probes do not arrive");
                        break;
                    }
                }
                _ = stopped.wait_for(|stop| *stop) => return,
            }
        }
        node.counters.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// Applies one envelope; true when it is this node's own probe.
fn receive(node: &Arc<Node>, payload: &[u8]) -> bool {
    let envelope: Envelope<'_> = match serde_json::from_slice(payload) {
        Ok(envelope) => envelope,
        Err(e) => {
            tracing::warn!(error = %e, "cluster: an envelope that is not one");
            return false;
        }
    };
    if *envelope.node == *node.id {
        return envelope.kind == Kind::Probe;
    }
    let frame = || envelope.frame.map(|f| Utf8Bytes::from(f.get().to_owned()));
    match envelope.kind {
        Kind::Message => {
            let (Some(conv), Some(seq), Some(frame)) = (&envelope.conv, envelope.seq, frame()) else {
                return false;
            };
            let recipients = match (&envelope.group, envelope.users.as_slice()) {
                (Some(group), _) => Recipients::Group((**group).into()),
                (None, [a, b]) => Recipients::Direct((**a).into(), (**b).into()),
                _ => match recipients_of(conv) {
                    Some(recipients) => recipients,
                    None => return false,
                },
            };
            let arrival = Arrival {
                frame,
                recipients,
                except: None,
            };
            node.arrive(conv, seq, arrival);
        }
        Kind::Deliver => {
            if let Some(frame) = frame() {
                for user in &envelope.users {
                    node.local.deliver(user, &frame, None, None);
                }
            }
        }
        Kind::Presence => {
            if let Some(user) = &envelope.user {
                node.presence_elsewhere(&envelope.node, user, envelope.flag, envelope.looking);
            }
        }
        Kind::Member => {
            if let (Some(group), Some(user)) = (&envelope.group, &envelope.user) {
                node.groups.set_member(group, user, envelope.flag);
            }
        }
        Kind::Closed => {
            if let Some(group) = &envelope.group {
                node.groups.set_closed(group, envelope.flag);
            }
        }
        Kind::Probe => {}
    }
    false
}

/// After (re)subscribing: writes this node's presence whole, reads every
/// other live node's, and after a re-subscription reloads the groups and
/// reads back what the conversations followed here missed.
async fn recover(node: &Arc<Node>, client: &redis::Client, resubscribed: bool) -> Result<(), String> {
    node.publish(Publish::Reannounce);
    let mut conn = tokio::time::timeout(REDIS_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut nodes = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(node_key("*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        nodes.extend(
            keys.into_iter()
                .filter_map(|k| k.strip_prefix("imbed:node:").map(str::to_owned)),
        );
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut online = HashMap::new();
    for other in nodes.into_iter().filter(|n| **n != *node.id) {
        let users: HashMap<String, u8> = redis::cmd("HGETALL")
            .arg(online_key(&other))
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        online.insert(other, users.into_iter().map(|(u, l)| (u, l == 1)).collect());
    }
    let (came, went) = node.remote().replace(online);
    for user in came {
        node.announce(&user, Change::CameOnline);
    }
    for user in went {
        node.announce(&user, Change::WentOffline);
    }
    if resubscribed {
        catch_up(node.clone());
    }
    Ok(())
}

/// Reloads the groups from the store, and reads back the messages the
/// conversations followed here have beyond what was delivered here.
fn catch_up(node: Arc<Node>) {
    tokio::spawn(async move {
        let reader = node.clone();
        let read = tokio::task::spawn_blocking(move || {
            let groups = reader.store.groups()?;
            let mut behind = Vec::new();
            for (conv, last) in reader.sequencer.followed() {
                let newest = reader.store.history(&conv, None, 1, usize::MAX)?;
                if let Some(stored) = newest.last().filter(|m| m.seq > last) {
                    behind.push((conv, stored.seq));
                }
            }
            Ok::<_, crate::store::StoreError>((groups, behind))
        })
        .await;
        match read {
            Ok(Ok((groups, behind))) => {
                node.groups.replace(groups);
                for (conv, last_seq) in behind {
                    if let Some(gap) = node.sequencer.behind(&conv, last_seq) {
                        node.backfill(gap);
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cluster: catching up after Redis came back failed"),
            Err(e) => tracing::warn!(error = %e, "cluster: catching up after Redis came back failed"),
        }
    });
}

/// Renews this node's alive key, probes its subscription, and takes the
/// users of nodes whose key expired offline.
pub(super) async fn heartbeat(node: Arc<Node>, client: redis::Client, mut stopped: watch::Receiver<bool>) {
    let every = Duration::from_millis(node.config.heartbeat_ms);
    let ttl = node.config.presence_ttl_ms;
    let mut connection: Option<ConnectionManager> = None;
    loop {
        node.publish(Publish::Probe);
        let beat = async {
            let conn = match connection.as_mut() {
                Some(conn) => conn,
                None => connection.insert(connection_manager(&client).await?),
            };
            let others = node.remote().nodes();
            let mut pipe = redis::pipe();
            (pipe.cmd("SET").arg(node_key(&node.id)))
                .arg(crate::protocol::now_ms())
                .arg("PX")
                .arg(ttl)
                .ignore();
            for other in &others {
                pipe.exists(node_key(other));
            }
            let alive: Vec<bool> = pipe.query_async(conn).await?;
            let dead: Vec<_> = others.into_iter().zip(alive).filter(|(_, alive)| !alive).collect();
            for (other, _) in &dead {
                let gone = node.remote().drop_node(other);
                tracing::info!(node = %other, users = gone.len(), "cluster: a node stopped renewing its presence");
                for user in gone {
                    node.announce(&user, Change::WentOffline);
                }
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(online_key(other)).query_async(conn).await;
            }
            Ok::<_, redis::RedisError>(())
        };
        if let Err(e) = beat.await {
            failed(&node, "heartbeat", &e);
        }
        if pause(&mut stopped, every).await {
            return;
        }
    }
}
