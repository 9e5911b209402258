// DOM building for the chat page. Every piece of user data goes in through
// textContent or an attribute, never as HTML, and every piece of text a user
// chose (a message, a name) is bidi-isolated (`dir="auto"` here and
// `unicode-bidi: isolate` in app.css) and clipped to its box, so it cannot
// reorder or draw over what is around it.
import { filesOf } from './files.js';
import { highlightParts } from './search.js';

export const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const shortDayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

// The two bidi controls that reverse letters in place: "invoice<RLO>fdp.exe"
// shows as "invoiceexe.pdf". Isolation keeps them inside the text they came
// in; this keeps them from working at all, and shows where they were.
const BIDI_OVERRIDES = /([\u202D\u202E])/;
const OVERRIDE_NAMES = { '\u202D': ['LRO', 'left-to-right override'], '\u202E': ['RLO', 'right-to-left override'] };

export function element(tag, { className, text, attrs = {} } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children);
  return node;
}

// Text a user chose, as an isolated element whose direction comes from its
// own first strong letter. Overrides become visible marks instead.
export function userText(tag, className, text) {
  return element(tag, { className, attrs: { dir: 'auto' } }, withVisibleOverrides(text));
}

// The nodes of `text`, each override replaced by its visible mark.
function withVisibleOverrides(text) {
  const parts = text.split(BIDI_OVERRIDES).map((part) => {
    const override = OVERRIDE_NAMES[part];
    if (!override) return part;
    const [mark, name] = override;
    const label = `${name} (U+${part.codePointAt(0).toString(16).toUpperCase()}), shown and not applied`;
    return element('abbr', { className: 'bidi-control', text: mark, attrs: { title: label } });
  });
  return parts.filter((part) => part !== '');
}

// A stable colour per name, so a person looks the same everywhere.
export function hueOf(name) {
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

// The protocol's body is any JSON value; this page sends {"text": "..."},
// with "files" when it has some (files.js), and a tombstone's is null.
export function messageText(body) {
  if (body === null || body === undefined) return '';
  if (typeof body === 'string') return body;
  if (typeof body.text === 'string') return body.text;
  if (filesOf(body).length) return '';
  return JSON.stringify(body);
}

// One line for a message (or an outbox entry) in the sidebar, a quote or a
// search result: its text, its files, or that it was deleted.
export function previewText(message) {
  if (message.deleted === true) return 'Message deleted';
  const text = messageText(message.body);
  const files = filesOf(message.body);
  if (files.length === 0) return text;
  if (text) return `📎 ${text}`;
  return files.length === 1 ? `📎 ${files[0].name}` : `📎 ${files.length} files`;
}

export function startOfDay(ts) {
  const date = new Date(ts);
  date.setHours(0, 0, 0, 0);
  return date.getTime();
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

// The sidebar's second line: who is typing, or who said what last.
function preview(conversation, { me, pending, typingUsers }) {
  if (typingUsers.length) return { typing: true, prefix: '', text: typingText(typingUsers) };
  if (pending) return { typing: false, prefix: 'You: ', text: previewText(pending) };
  const latest = conversation.latestMessage();
  if (!latest) return { typing: false, prefix: '', text: conversation.isGroup ? 'No messages yet' : '' };
  const prefix = latest.from === me ? 'You: ' : conversation.isGroup ? `${latest.from}: ` : '';
  return { typing: false, prefix, text: previewText(latest) };
}

// One entry of the sidebar, as a row for `reconcileChildren`. `details`: me,
// active, presence, pending (the newest unsent message), typingUsers,
// showUnread, now.
export function conversationRow(conversation, details, onOpen) {
  const { active, presence, showUnread, now } = details;
  const unread = showUnread ? conversation.unread : 0;
  const shown = preview(conversation, details);
  const latestTs = details.pending?.createdAt ?? conversation.latestMessage()?.ts;
  const time = latestTs ? shortTime(latestTs, now) : '';
  const status = [
    conversation.isGroup ? 'group' : presence === undefined ? '' : presence ? 'online' : 'offline',
    unread ? `${unread} unread` : '',
  ].filter(Boolean);

  const build = () => {
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
            userText('span', 'conversation-name', conversation.title),
            element('span', { className: 'conversation-time', text: time }),
          ]),
          element('span', { className: 'conversation-bottom' }, [
            element('span', { className: shown.typing ? 'conversation-preview typing-preview' : 'conversation-preview' }, [
              shown.prefix,
              userText('span', 'preview-text', shown.text),
            ]),
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
  };
  return {
    key: conversation.id,
    signature: [active, presence, unread, time, shown.typing, shown.prefix, shown.text].join('\u0000'),
    build,
  };
}

// A conversation's name from its id, for a conversation the page may not
// hold: the group, or the other user of a direct one (oneself for notes).
export function conversationTitle(conv, me) {
  if (conv.startsWith('g:')) return conv.slice(2);
  const [, first, second] = conv.split(':');
  return first === me ? second : first;
}

// Text a user chose (as userText makes it) with the words of a search marked.
function highlighted(className, text, words) {
  const parts = highlightParts(text, words).map((part) =>
    part.match ? element('mark', {}, withVisibleOverrides(part.text)) : withVisibleOverrides(part.text),
  );
  return element('span', { className, attrs: { dir: 'auto' } }, parts.flat());
}

// One search result (a `msg` frame), as a row for `reconcileChildren`:
// where it is, who wrote it when, its text with the query's words marked.
export function searchResultRow(result, { me, words, now }, onOpen) {
  const title = conversationTitle(result.conv, me);
  const group = result.conv.startsWith('g:');
  const text = previewText(result);
  const time = Number.isSafeInteger(result.ts) ? shortTime(result.ts, now) : '';
  const sender = result.from === me ? 'You' : result.from;
  const build = () => {
    const button = element(
      'button',
      { className: 'search-result', attrs: { type: 'button', 'aria-label': `${sender} in ${group ? `group ${title}` : title}: ${text}` } },
      [
        avatar(title, { group }),
        element('span', { className: 'conversation-main' }, [
          element('span', { className: 'conversation-top' }, [
            userText('span', 'conversation-name', title),
            element('span', { className: 'conversation-time', text: time }),
          ]),
          element('span', { className: 'search-snippet' }, [userText('span', 'search-sender', sender), ': ', highlighted('preview-text', text, words)]),
        ]),
      ],
    );
    button.addEventListener('click', () => onOpen(result));
    return element('li', { attrs: { 'data-conv': result.conv, 'data-seq': result.seq } }, [button]);
  };
  return { key: `${result.conv}#${result.seq}`, signature: [title, time, sender, text, words.join(' ')].join('\u0000'), build };
}

// Makes `container`'s children the nodes of `rows` ({key, signature, build}),
// in order. `kept` maps a key to its node and signature across calls: a
// node is built again only when its signature changes, and one that stays is
// never moved, so focus, selection and screen readers are not disturbed.
export function reconcileChildren(container, rows, kept) {
  const wanted = new Set(rows.map((row) => row.key));
  for (const [key, { node }] of kept) {
    if (!wanted.has(key)) {
      node.remove();
      kept.delete(key);
    }
  }
  const nodes = rows.map((row) => {
    const previous = kept.get(row.key);
    if (previous?.signature === row.signature) return previous.node;
    const node = row.build();
    node.dataset.key = row.key;
    previous?.node.remove();
    kept.set(row.key, { node, signature: row.signature });
    return node;
  });
  const children = container.children;
  nodes.forEach((node, index) => {
    if (children[index] !== node) container.insertBefore(node, children[index] ?? null);
  });
}
