// DOM building for the chat page. Every piece of user data goes in through
// textContent or an attribute, never as HTML.

const CONTINUED_RUN_MS = 5 * 60 * 1000;
const NEAR_BOTTOM_PX = 80;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const shortDayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

function element(tag, { className, text, attrs = {} } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children);
  return node;
}

// A stable colour per name, so a person looks the same everywhere.
function hueOf(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}

function initials(name) {
  const parts = name.split(/[._@-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : name.slice(0, 2);
  return letters.toUpperCase();
}

// presence: true, false, or undefined when unknown (groups, not watched yet).
export function avatar(name, { group = false, presence } = {}) {
  const node = element('span', {
    className: group ? 'avatar avatar-group' : 'avatar',
    text: group ? '#' : initials(name),
    attrs: { 'aria-hidden': 'true' },
  });
  node.style.setProperty('--hue', hueOf(name));
  if (presence !== undefined) node.append(element('span', { className: `presence-dot ${presence ? 'online' : 'offline'}` }));
  return node;
}

// The protocol's body is any JSON value; this page sends {"text": "..."}.
function messageText(body) {
  if (typeof body === 'string') return body;
  if (typeof body?.text === 'string') return body.text;
  return JSON.stringify(body);
}

function startOfDay(ts) {
  const date = new Date(ts);
  date.setHours(0, 0, 0, 0);
  return date.getTime();
}

function dayLabel(ts, now) {
  const days = Math.round((startOfDay(now) - startOfDay(ts)) / 86400000);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  return dayFormat.format(ts);
}

// Time of day for today, the date for anything older.
function shortTime(ts, now) {
  return startOfDay(ts) === startOfDay(now) ? timeFormat.format(ts) : shortDayFormat.format(ts);
}

export function typingText(users) {
  if (users.length === 0) return '';
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  return `${users.length} people are typing…`;
}

function previewText(conversation, { me, pending, typingUsers }) {
  if (typingUsers.length) return { text: typingText(typingUsers), typing: true };
  const latest = conversation.latestMessage();
  if (pending) return { text: `You: ${messageText(pending.body)}` };
  if (!latest) return { text: conversation.isGroup ? 'No messages yet' : '' };
  const sender = latest.from === me ? 'You: ' : conversation.isGroup ? `${latest.from}: ` : '';
  return { text: sender + messageText(latest.body) };
}

// One entry of the sidebar. `details`: me, active, presence, pending (the
// newest unsent message), typingUsers, showUnread, now.
export function conversationItem(conversation, details, onOpen) {
  const { active, presence, showUnread, now } = details;
  const unread = showUnread ? conversation.unread : 0;
  const preview = previewText(conversation, details);
  const latestTs = details.pending?.createdAt ?? conversation.latestMessage()?.ts;
  const status = [
    conversation.isGroup ? 'group' : presence === undefined ? '' : presence ? 'online' : 'offline',
    unread ? `${unread} unread` : '',
  ].filter(Boolean);

  const button = element(
    'button',
    {
      className: 'conversation-item',
      attrs: {
        type: 'button',
        'aria-current': active ? 'page' : undefined,
        'aria-label': [conversation.title, ...status].join(', '),
      },
    },
    [
      avatar(conversation.title, { group: conversation.isGroup, presence }),
      element('span', { className: 'conversation-main' }, [
        element('span', { className: 'conversation-top' }, [
          element('span', { className: 'conversation-name', text: conversation.title }),
          element('span', { className: 'conversation-time', text: latestTs ? shortTime(latestTs, now) : '' }),
        ]),
        element('span', { className: 'conversation-bottom' }, [
          element('span', { className: preview.typing ? 'conversation-preview typing-preview' : 'conversation-preview', text: preview.text }),
          unread ? element('span', { className: 'unread-badge', text: unread > 99 ? '99+' : String(unread) }) : '',
        ]),
      ]),
    ],
  );
  button.addEventListener('click', () => onOpen(conversation.id));
  return element(
    'li',
    {
      attrs: {
        'data-conv': conversation.id,
        'data-presence': presence === undefined ? undefined : presence ? 'online' : 'offline',
        'data-unread': unread,
      },
    },
    [button],
  );
}

// What the page shows of one message: stored, waiting in the outbox, or
// refused by the server. status: null for others' messages; for own ones
// 'sending' | 'sent' | 'read' | 'refused'.
export function messageEntries(conversation, { me, pending, refused }) {
  const stored = conversation.sortedMessages().map((msg) => {
    const readers = msg.from === me ? conversation.readersOf(msg.seq) : [];
    return {
      key: `seq-${msg.seq}`,
      seq: msg.seq,
      from: msg.from,
      ts: msg.ts,
      body: msg.body,
      status: msg.from !== me ? null : readers.length ? 'read' : 'sent',
      readers,
    };
  });
  const unsent = (entries, status) =>
    entries.map((entry) => ({ key: `${status}-${entry.id}`, from: me, ts: entry.createdAt, body: entry.body, status, reason: entry.reason, readers: [] }));
  return [...stored, ...unsent(pending, 'sending'), ...unsent(refused, 'refused')];
}

function statusMark(entry, isGroup) {
  const marks = {
    sending: { text: '', label: 'Sending' },
    sent: { text: '✓', label: 'Sent' },
    read: { text: '✓✓', label: isGroup ? `Read by ${entry.readers.join(', ')}` : 'Read' },
    refused: { text: '!', label: 'Not sent' },
  };
  const { text, label } = marks[entry.status];
  return element('span', { className: `status-mark ${entry.status}`, text, attrs: { role: 'img', 'aria-label': label, title: label } });
}

function messageNode(entry, { me, isGroup, continued }) {
  const mine = entry.from === me;
  const showSender = isGroup && !mine && !continued;
  const meta = element('span', { className: 'meta' }, [
    element('time', { text: timeFormat.format(entry.ts), attrs: { datetime: new Date(entry.ts).toISOString(), title: fullTimeFormat.format(entry.ts) } }),
  ]);
  if (mine) meta.append(statusMark(entry, isGroup));
  const bubble = element('div', { className: 'bubble' }, [
    showSender ? element('p', { className: 'sender', text: entry.from, attrs: { style: `--hue: ${hueOf(entry.from)}` } }) : '',
    element('p', { className: 'text' }, [element('span', { className: 'message-body', text: messageText(entry.body) }), meta]),
    entry.status === 'refused' ? element('p', { className: 'refused-reason', text: `Not sent: ${entry.reason}` }) : '',
  ]);
  const side = isGroup && !mine ? [showSender ? avatar(entry.from) : element('span', { className: 'avatar-spacer' })] : [];
  return element(
    'li',
    {
      className: ['message', mine ? 'mine' : 'theirs', continued ? 'continued' : ''].filter(Boolean).join(' '),
      attrs: { 'data-seq': entry.seq, 'data-status': entry.status, 'data-from': entry.from },
    },
    [...side, bubble],
  );
}

// Rows of the message list: a day separator where the day changes, then the
// messages; consecutive messages of one sender form a run with one name.
function messageRows(entries, { me, isGroup, now }) {
  const rows = [];
  let previous = null;
  for (const entry of entries) {
    const day = startOfDay(entry.ts);
    const newDay = !previous || startOfDay(previous.ts) !== day;
    if (newDay) {
      const label = dayLabel(entry.ts, now);
      rows.push({ key: `day-${day}`, signature: label, build: () => element('li', { className: 'day', attrs: { role: 'separator' } }, [element('span', { text: label })]) });
    }
    const continued = !newDay && previous.from === entry.from && entry.ts - previous.ts < CONTINUED_RUN_MS;
    rows.push({
      key: entry.key,
      signature: `${entry.status}|${entry.readers.join(',')}|${continued}`,
      build: () => messageNode(entry, { me, isGroup, continued }),
    });
    previous = entry;
  }
  return rows;
}

// The message list of the open conversation. Each row's element is kept and
// rebuilt only when what it shows changes, so an incoming message does not
// disturb the reader's scroll position or text selection.
export class MessageListView {
  #list;
  #scroller;
  #elements = new Map();
  #conversationId = null;

  constructor(list, scroller) {
    this.#list = list;
    this.#scroller = scroller;
  }

  get nearTop() {
    return this.#scroller.scrollTop < NEAR_BOTTOM_PX;
  }

  // scrollToBottom: after the user sent a message.
  render(conversation, entries, { me, now, scrollToBottom }) {
    const switched = conversation.id !== this.#conversationId;
    if (switched) {
      this.#elements.clear();
      this.#conversationId = conversation.id;
    }
    const scroller = this.#scroller;
    const wasNearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
    // Older messages are added above what the reader looks at: the first
    // message's shift is how far to scroll to keep it still. (Not the first
    // row: a day separator stays first when older messages of its day come.)
    // It is found again by key, as it may be rebuilt: it is no longer the
    // first of its sender's run.
    const anchor = this.#list.querySelector('li.message');
    const anchorKey = anchor?.dataset.key;
    const anchorTop = anchor?.offsetTop;

    const rows = messageRows(entries, { me, isGroup: conversation.isGroup, now });
    const nodes = rows.map((row) => {
      let kept = this.#elements.get(row.key);
      if (!kept || kept.signature !== row.signature) {
        kept = { node: row.build(), signature: row.signature };
        kept.node.dataset.key = row.key;
        this.#elements.set(row.key, kept);
      }
      return kept.node;
    });
    const liveKeys = new Set(rows.map((row) => row.key));
    for (const key of this.#elements.keys()) if (!liveKeys.has(key)) this.#elements.delete(key);
    // Move only what changed: a live region re-announces every node put
    // back into it, and a new message should be announced alone.
    const children = this.#list.children;
    nodes.forEach((node, index) => {
      if (children[index] !== node) this.#list.insertBefore(node, children[index] ?? null);
    });
    while (children.length > nodes.length) this.#list.lastElementChild.remove();

    const anchorNow = this.#elements.get(anchorKey)?.node;
    if (switched || wasNearBottom || scrollToBottom) scroller.scrollTop = scroller.scrollHeight;
    else if (anchorNow) scroller.scrollTop += anchorNow.offsetTop - anchorTop;
  }

  clear() {
    this.#elements.clear();
    this.#conversationId = null;
    this.#list.replaceChildren();
  }
}
