// Conversation events (docs/PROTOCOL.md, "Replies, edits, deletes and
// reactions"): `msg` frames with a `kind` that change an earlier message of
// their conversation, their `target`, and are never shown as messages of
// their own. They have seqs like messages, so the page holds them beside
// the messages (chat-state.js) to keep its window of seqs gapless.
//
// A message reaches the page in its current state (`sync`, `history`) or
// as sent (live, or from an ack), and the events come after it, live or
// replayed by `sync` and `history`. The page applies a message's events in
// seq order, and applying one is idempotent: on a state that already shows
// it, an edit sets the body it already has, a react adds a user already
// listed, an unreact removes one already gone, a delete leaves a tombstone
// a tombstone. So replaying every event of a message on top of any state
// that shows a prefix of them ends in the same state, however the message
// and its events came: live frames, sync replays and history converge.

// Emojis the page offers; reactions others chose with any other are shown
// all the same.
export const QUICK_REACTIONS = [
  ['👍', 'thumbs up'],
  ['❤️', 'heart'],
  ['😂', 'laughing'],
  ['😮', 'surprised'],
  ['😢', 'sad'],
  ['🎉', 'party'],
];

// The protocol's rule for an emoji: 1 to 64 bytes of text, no control characters.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const encoder = new TextEncoder();

export function validEmoji(emoji) {
  return typeof emoji === 'string' && emoji !== '' && encoder.encode(emoji).length <= 64 && !CONTROL.test(emoji);
}

// Every `msg` with a `kind` is an event: a kind a later server adds is not
// shown either, and changes nothing here.
export function isEvent(msg) {
  return msg.kind !== undefined && msg.kind !== null;
}

// The seq an event changes, or null when it names none it could: a target
// is an earlier seq of the same conversation.
export function targetOf(event) {
  const { target } = event;
  return Number.isSafeInteger(target) && target >= 1 && target < event.seq ? target : null;
}

// Each message's revision: a number that moves whenever an event changes
// it, so that a view rebuilds what shows it (and what quotes it). Kept
// beside the frame, not in it: the frame stays what the server sent.
const revisions = new WeakMap();

export function revisionOf(message) {
  return revisions.get(message) ?? 0;
}

function changed(message) {
  revisions.set(message, revisionOf(message) + 1);
  return true;
}

// The users who reacted with each emoji, as the state carries them
// ({"👍":["alice","bob"]}); anything else in that field is dropped.
function reactionMap(message) {
  const reactions = message.reactions;
  if (!reactions || typeof reactions !== 'object' || Array.isArray(reactions)) return {};
  return reactions;
}

function usersOf(reactions, emoji) {
  const users = Object.hasOwn(reactions, emoji) ? reactions[emoji] : null;
  return Array.isArray(users) ? users.filter((user) => typeof user === 'string') : [];
}

// Applies `event` to `message`, its target (the caller matched them).
// Returns true when the message changed.
export function applyEvent(message, event) {
  // A tombstone stays one: nothing edits or reacts to a deleted message.
  if (message.deleted === true) return false;
  switch (event.kind) {
    case 'edit': {
      // Only the sender edits (the server enforces it; the page does not
      // trust a frame that says otherwise). An edit erased by a later delete
      // has no body left: the delete that follows it makes the tombstone.
      if (event.from !== message.from || event.deleted === true) return false;
      if (message.edited === event.ts && JSON.stringify(message.body) === JSON.stringify(event.body)) return false;
      message.body = event.body;
      message.edited = event.ts;
      return changed(message);
    }
    case 'delete': {
      message.deleted = true;
      message.body = null;
      delete message.edited;
      delete message.reactions;
      return changed(message);
    }
    case 'react':
    case 'unreact': {
      const emoji = event.body?.emoji;
      if (!validEmoji(emoji) || typeof event.from !== 'string') return false;
      const reactions = reactionMap(message);
      const users = usersOf(reactions, emoji);
      const has = users.includes(event.from);
      if (has === (event.kind === 'react')) return false;
      const next = { ...reactions };
      if (has) {
        const rest = users.filter((user) => user !== event.from);
        if (rest.length) next[emoji] = rest;
        else delete next[emoji];
      } else {
        next[emoji] = [...users, event.from].sort();
      }
      message.reactions = next;
      return changed(message);
    }
    default:
      return false;
  }
}

// Code point order, which is the bytewise order of UTF-8.
function byCodePoints(a, b) {
  const left = [...a];
  const right = [...b];
  for (let index = 0; index < Math.min(left.length, right.length); index += 1) {
    const difference = left[index].codePointAt(0) - right[index].codePointAt(0);
    if (difference) return difference;
  }
  return left.length - right.length;
}

// A message's reactions for showing: [{ emoji, users, count, mine }], the
// emojis in code point order: the order they came is not in a message's
// state, and every page must show the same whatever way it learnt them.
export function reactionsOf(message, me) {
  if (message.deleted === true) return [];
  const reactions = reactionMap(message);
  return Object.keys(reactions)
    .filter(validEmoji)
    .sort(byCodePoints)
    .map((emoji) => {
      const users = usersOf(reactions, emoji);
      return { emoji, users, count: users.length, mine: users.includes(me) };
    })
    .filter((reaction) => reaction.count > 0);
}

// True when `user` reacted to `message` with `emoji`.
export function hasReacted(message, emoji, user) {
  return usersOf(reactionMap(message), emoji).includes(user);
}

// The seq a message replies to, or null.
export function replyTargetOf(message) {
  const seq = message.reply_to;
  return Number.isSafeInteger(seq) && seq >= 1 && (message.seq === undefined || seq < message.seq) ? seq : null;
}
