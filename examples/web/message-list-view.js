// The open conversation's message list, windowed: only the rows around the
// viewport are in the DOM (a few dozen, whether the conversation holds 50
// messages or 100,000). Padding above and below the rows stands in for the
// rest, at an estimated height per row. Whenever the window moves or the
// messages change, the row the reader looks at is put back where it was on
// screen, so neither a history page above nor a flood below moves it.
//
// A row's controls (reply, react, edit, delete, reaction chips, a quote, a
// file) carry `data-action`; the page handles their clicks on the list, so
// a row rebuilt as it scrolls needs no handlers of its own.
import { filesOf, formatSize, previewable } from './files.js';
import { avatar, element, hueOf, messageText, reconcileChildren, startOfDay, timeFormat, userText } from './render.js';

const CONTINUED_RUN_MS = 5 * 60 * 1000;
const NEAR_EDGE_PX = 80;
// No row is shorter than this (one line of a message in a run), so this many
// pixels per row always fill the viewport.
const MIN_ROW_PX = 32;
// Rows kept beyond each edge of the viewport: scrolling shows rows that are
// there already while the window catches up on the next frame.
const OVERSCAN_ROWS = 10;
// The guess until rows have been measured.
const FIRST_ROW_ESTIMATE_PX = 48;
// How long a message someone went to (a search result, a quote) stands out.
const FLASH_MS = 2000;

const fullTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });

function dayLabel(ts, now) {
  const days = Math.round((startOfDay(now) - startOfDay(ts)) / 86400000);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  return dayFormat.format(ts);
}

// An own message's state (the rule: Conversation.receiptOf in
// chat-state.js): ✓ stored, ✓ "Read by N" in a group some have read, a blue
// ✓✓ read by the peer or by every other member of the group.
function statusLabel(item, isGroup) {
  const names = item.readers.length ? `: ${item.readers.join(', ')}` : '';
  switch (item.status) {
    case 'sending':
      return 'Sending';
    case 'sent':
      return 'Sent';
    case 'partly-read':
      return item.others === null ? `Read by ${item.readCount}${names}` : `Read by ${item.readCount} of ${item.others}${names}`;
    case 'read':
      return isGroup ? `Read by everyone${names}` : 'Read';
    default:
      return 'Not sent';
  }
}

function statusMarks(item, isGroup) {
  const texts = { sending: '', sent: '✓', 'partly-read': '✓', read: '✓✓', refused: '!' };
  const label = statusLabel(item, isGroup);
  const mark = element('span', { className: `status-mark ${item.status}`, text: texts[item.status], attrs: { role: 'img', 'aria-label': label, title: label } });
  if (item.status !== 'partly-read') return [mark];
  // The mark's label says it for screen readers.
  return [mark, element('span', { className: 'read-count', text: `Read by ${item.readCount}`, attrs: { 'aria-hidden': 'true', title: label } })];
}

// What a reply shows of its target: who wrote what, or why it cannot say.
// A button: it goes to the target, loading older pages when needed.
function quoteNode(quote, me) {
  let content;
  if (!quote.loaded) content = [element('span', { className: 'quote-missing', text: 'Message not loaded' })];
  else if (quote.deleted) content = [element('span', { className: 'quote-missing', text: 'Message deleted' })];
  else content = [userText('span', 'quote-from', quote.from === me ? 'You' : quote.from), userText('span', 'quote-text', quote.text)];
  const label = quote.loaded && !quote.deleted ? `Reply to ${quote.from}: ${quote.text}` : `Reply to a message: ${content[0].textContent}`;
  return element('button', { className: 'quote', attrs: { type: 'button', 'data-action': 'reveal', 'data-target': quote.seq, 'aria-label': `${label}. Go to it` } }, content);
}

// A file of a message: an image's preview (its bytes fetched with the
// session's token: files.js), anything else a button that saves it. Both
// carry the file's id and name for the page's click handler.
function fileNode(file, fileUrls) {
  const size = formatSize(file.size);
  const download = element(
    'button',
    {
      className: 'file-link',
      attrs: { type: 'button', 'data-action': 'download', 'data-file-id': file.id, 'data-file-name': file.name, 'aria-label': `Download ${file.name}${size ? `, ${size}` : ''}` },
    },
    [element('span', { className: 'file-icon', text: '📄', attrs: { 'aria-hidden': 'true' } }), userText('span', 'file-name', file.name), element('span', { className: 'file-size', text: size })],
  );
  if (!previewable(file) || !fileUrls) return download;
  const image = element('img', { attrs: { alt: file.name, 'data-file-id': file.id } });
  // A fixed box, so that the row does not change height when the image comes.
  const figure = element('figure', { className: 'file-image', attrs: { 'data-state': 'loading' } }, [image, element('figcaption', {}, [download])]);
  image.addEventListener('load', () => (figure.dataset.state = 'shown'));
  image.addEventListener('error', () => (figure.dataset.state = 'failed'));
  const ready = fileUrls.ready(file.id);
  if (ready) image.src = ready;
  else fileUrls.preview(file.id).then((url) => (image.src = url), () => (figure.dataset.state = 'failed'));
  return figure;
}

function reactionChips(item) {
  return element(
    'div',
    { className: 'reactions' },
    item.reactions.map(({ emoji, count, users, mine }) =>
      element('button', {
        className: mine ? 'reaction mine' : 'reaction',
        text: `${emoji} ${count}`,
        attrs: {
          type: 'button',
          'data-action': 'toggle-reaction',
          'data-emoji': emoji,
          'aria-pressed': mine ? 'true' : 'false',
          'aria-label': `${emoji} ${count}: ${users.join(', ')}${mine ? '. Remove your reaction' : `. React with ${emoji}`}`,
          title: users.join(', '),
        },
      }),
    ),
  );
}

// What one can do with a stored message: reply and react; edit and delete
// one's own. Shown on hover and focus (app.css), always there for keys.
function actionBar(mine) {
  const button = (action, text, label) => element('button', { className: 'message-action', text, attrs: { type: 'button', 'data-action': action, 'aria-label': label, title: label } });
  return element('div', { className: 'message-actions', attrs: { role: 'group', 'aria-label': 'Message actions' } }, [
    button('reply', '↩', 'Reply'),
    button('react', '☺', 'React'),
    mine ? button('edit', '✎', 'Edit') : '',
    mine ? button('delete', '🗑', 'Delete') : '',
  ]);
}

function messageNode(item, { me, isGroup, continued, files }) {
  const mine = item.from === me;
  const showSender = isGroup && !mine && !continued;
  const meta = element('span', { className: 'meta' }, [
    item.edited !== undefined && !item.deleted
      ? element('span', { className: 'edited', text: 'edited', attrs: { title: `Edited ${fullTimeFormat.format(item.edited)}` } })
      : '',
    element('time', { text: timeFormat.format(item.ts), attrs: { datetime: new Date(item.ts).toISOString(), title: fullTimeFormat.format(item.ts) } }),
  ]);
  if (mine) meta.append(...statusMarks(item, isGroup));
  const sender = showSender ? userText('p', 'sender', item.from) : '';
  if (sender) sender.style.setProperty('--hue', hueOf(item.from));
  const attached = item.deleted ? [] : filesOf(item.body);
  const text = item.deleted
    ? element('p', { className: 'text tombstone' }, [element('span', { className: 'message-body', text: 'Message deleted' }), meta])
    : element('p', { className: 'text' }, [userText('span', 'message-body', messageText(item.body)), meta]);
  const bubble = element('div', { className: 'bubble' }, [
    sender,
    item.quote && !item.deleted ? quoteNode(item.quote, me) : '',
    attached.length ? element('div', { className: 'files' }, attached.map((file) => fileNode(file, files))) : '',
    text,
    item.status === 'refused' ? element('p', { className: 'refused-reason', text: `Not sent: ${item.reason}` }) : '',
  ]);
  const stored = item.seq !== undefined;
  const main = element('div', { className: 'message-main' }, [bubble, item.reactions.length ? reactionChips(item) : '']);
  const side = isGroup && !mine ? [showSender ? avatar(item.from) : element('span', { className: 'avatar-spacer' })] : [];
  return element(
    'li',
    {
      className: ['message', mine ? 'mine' : 'theirs', continued ? 'continued' : ''].filter(Boolean).join(' '),
      attrs: {
        'data-seq': item.seq,
        'data-status': item.status,
        'data-from': item.from,
        'data-read-count': item.status ? item.readCount : undefined,
        'data-edited': item.edited !== undefined && !item.deleted ? 'true' : undefined,
        'data-deleted': item.deleted ? 'true' : undefined,
        'data-reply-to': item.quote?.seq,
      },
    },
    [...side, main, stored && !item.deleted ? actionBar(mine) : ''],
  );
}

function setAttributeIfChanged(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

// The rows of one item: a day separator where the day changes, then the
// message; consecutive messages of one sender form a run with one name.
function itemRows(item, previous, { me, isGroup, now, files }) {
  const rows = [];
  const day = startOfDay(item.ts);
  const newDay = !previous || startOfDay(previous.ts) !== day;
  if (newDay) {
    const label = dayLabel(item.ts, now);
    rows.push({ key: `day-${day}`, signature: label, build: () => element('li', { className: 'day', attrs: { role: 'separator' } }, [element('span', { text: label })]) });
  }
  const continued = !newDay && previous.from === item.from && item.ts - previous.ts < CONTINUED_RUN_MS;
  rows.push({
    key: item.key,
    signature: `${item.status}|${item.readCount}|${item.others}|${item.readers.join(',')}|${continued}|${item.revision}`,
    build: () => messageNode(item, { me, isGroup, continued, files }),
  });
  return rows;
}

export class MessageListView {
  #list;
  #scroller;
  #kept = new Map();
  #conversationId = null;
  // The items shown (a MessageItems) and how: { me, isGroup, now, files }.
  #items = null;
  #context = null;
  // The window: items [start, end) have rows in the DOM.
  #start = 0;
  #end = 0;
  #rowEstimatePx = FIRST_ROW_ESTIMATE_PX;
  #followScheduled = false;

  constructor(list, scroller) {
    this.#list = list;
    this.#scroller = scroller;
    scroller.addEventListener('scroll', () => this.#scheduleFollow(), { passive: true });
    window.addEventListener('resize', () => this.#scheduleFollow());
  }

  get nearTop() {
    return this.#scroller.scrollTop < NEAR_EDGE_PX;
  }

  // Shows `items` of the conversation `conversationId`. scrollToBottom:
  // after the user sent a message. files: the session's FileUrls, for
  // image previews.
  render(conversationId, items, { me, isGroup, now, scrollToBottom, files }) {
    const switched = conversationId !== this.#conversationId;
    if (switched) {
      this.clear();
      this.#conversationId = conversationId;
    }
    const stayAtBottom = switched || scrollToBottom || this.#nearBottom();
    const anchors = stayAtBottom ? [] : this.#anchors();
    this.#items = items;
    this.#context = { me, isGroup, now, files };
    // The first anchor still there: an unsent message may have become a stored one.
    const anchor = anchors.map((candidate) => ({ ...candidate, index: items.indexOfKey(candidate.key) })).find(({ index }) => index !== -1);
    if (anchor) this.#showAround(anchor.index, anchor.offset);
    else this.#showBottom();
  }

  // Scrolls to the item with `key` (rendered already) and makes it stand
  // out for a moment; false when it is not among the items.
  reveal(key) {
    const index = this.#items?.indexOfKey(key) ?? -1;
    if (index === -1) return false;
    this.#showAround(index, this.#scroller.clientHeight / 3);
    const node = this.#kept.get(key)?.node;
    if (node) {
      node.classList.add('flash');
      setTimeout(() => node.classList.remove('flash'), FLASH_MS);
    }
    return true;
  }

  clear() {
    this.#kept.clear();
    this.#list.replaceChildren();
    this.#list.style.paddingTop = '';
    this.#list.style.paddingBottom = '';
    this.#conversationId = null;
    this.#items = null;
    this.#start = 0;
    this.#end = 0;
  }

  #nearBottom() {
    const scroller = this.#scroller;
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_EDGE_PX;
  }

  #rowsPerViewport() {
    return Math.ceil(this.#scroller.clientHeight / MIN_ROW_PX) + 1;
  }

  // The window ending at the newest item, scrolled to the bottom.
  #showBottom() {
    const count = this.#items.count;
    this.#renderWindow(Math.max(0, count - this.#rowsPerViewport() - OVERSCAN_ROWS), count);
    this.#scroller.scrollTop = this.#scroller.scrollHeight;
  }

  #showTop() {
    this.#renderWindow(0, Math.min(this.#items.count, this.#rowsPerViewport() + OVERSCAN_ROWS));
    this.#scroller.scrollTop = 0;
  }

  // The window around item `index`, scrolled so that its message row is
  // `offset` pixels below the top of the viewport.
  #showAround(index, offset) {
    const count = this.#items.count;
    this.#renderWindow(Math.max(0, index - OVERSCAN_ROWS), Math.min(count, index + this.#rowsPerViewport() + OVERSCAN_ROWS));
    const node = this.#kept.get(this.#items.at(index).key).node;
    this.#scroller.scrollTop += this.#offsetOf(node) - offset;
  }

  #renderWindow(start, end) {
    const items = this.#items;
    const rows = [];
    const keys = [];
    let previous = start > 0 ? items.at(start - 1) : null;
    for (let index = start; index < end; index += 1) {
      const item = items.at(index);
      rows.push(...itemRows(item, previous, this.#context));
      keys.push(item.key);
      previous = item;
    }
    reconcileChildren(this.#list, rows, this.#kept);
    // Screen readers (and tests) learn each message's place among all of
    // them, not only among the few in the DOM.
    const count = String(items.count);
    keys.forEach((key, offset) => {
      const node = this.#kept.get(key).node;
      setAttributeIfChanged(node, 'aria-posinset', String(start + offset + 1));
      setAttributeIfChanged(node, 'aria-setsize', count);
    });
    this.#start = start;
    this.#end = end;
    this.#learnRowHeight();
    this.#list.style.paddingTop = `${start * this.#rowEstimatePx}px`;
    this.#list.style.paddingBottom = `${(items.count - end) * this.#rowEstimatePx}px`;
  }

  // The estimate per row is the average of the rows in the window.
  #learnRowHeight() {
    const rendered = this.#end - this.#start;
    const first = this.#list.firstElementChild;
    if (rendered === 0 || !first) return;
    const height = this.#list.lastElementChild.getBoundingClientRect().bottom - first.getBoundingClientRect().top;
    if (height > 0) this.#rowEstimatePx = height / rendered;
  }

  #offsetOf(node) {
    return node.getBoundingClientRect().top - this.#scroller.getBoundingClientRect().top;
  }

  // What the reader looks at, to be kept in place: the message rows in the
  // viewport, top first, each with its offset from the viewport's top.
  // When the viewport shows only padding (a jump of the scrollbar), the item
  // estimated to be at its top.
  #anchors() {
    if (!this.#items || this.#items.count === 0) return [];
    const viewport = this.#scroller.getBoundingClientRect();
    const visible = [];
    for (const node of this.#list.children) {
      if (!node.classList.contains('message')) continue;
      const { top, bottom } = node.getBoundingClientRect();
      if (bottom > viewport.top && top < viewport.bottom) visible.push({ key: node.dataset.key, offset: top - viewport.top });
    }
    if (visible.length) return visible;
    return [{ key: this.#items.at(this.#estimatedIndexAt(viewport.top)).key, offset: 0 }];
  }

  // The item the padding at viewport position `y` stands in for.
  #estimatedIndexAt(y) {
    const list = this.#list.getBoundingClientRect();
    const windowTop = list.top + this.#start * this.#rowEstimatePx;
    if (y < windowTop) {
      return Math.min(this.#start - 1, Math.max(0, Math.floor((y - list.top) / this.#rowEstimatePx)));
    }
    const windowBottom = list.bottom - (this.#items.count - this.#end) * this.#rowEstimatePx;
    return Math.min(this.#items.count - 1, this.#end + Math.max(0, Math.floor((y - windowBottom) / this.#rowEstimatePx)));
  }

  // Scrolling moves the window once per frame, and only when the viewport
  // comes near one of its edges.
  #scheduleFollow() {
    if (this.#followScheduled) return;
    this.#followScheduled = true;
    requestAnimationFrame(() => {
      this.#followScheduled = false;
      this.#follow();
    });
  }

  #follow() {
    if (!this.#items || this.#items.count === 0) return;
    // At the very top the reader wants the oldest rows, wherever the
    // estimates put them; at the bottom, the newest, including those that
    // arrived since the last render.
    if (this.#scroller.scrollTop === 0 && this.#start > 0) {
      this.#showTop();
      return;
    }
    if (this.#nearBottom() && this.#end < this.#items.count) {
      this.#showBottom();
      return;
    }
    const anchors = this.#anchors();
    const first = this.#items.indexOfKey(anchors[0].key);
    const last = this.#items.indexOfKey(anchors.at(-1).key);
    const margin = OVERSCAN_ROWS / 2;
    const roomAbove = this.#start === 0 || first - this.#start >= margin;
    const roomBelow = this.#end === this.#items.count || this.#end - 1 - last >= margin;
    if (first < this.#start || last >= this.#end || !roomAbove || !roomBelow) this.#showAround(first, anchors[0].offset);
  }
}
