// The composer: the text box, what it writes (a new message, a reply, or
// an edit of one's own message, with a bar above saying which), and the
// files attached to the next message, uploaded as soon as they are chosen
// (files.js) so that sending waits for nothing but the server's ack.
import { formatSize, uploadFile } from './files.js';
import { element, userText } from './render.js';

const MAX_HEIGHT_PX = 160;

export class Composer {
  #ui;
  #handlers;
  // null (a new message), { kind: 'reply', seq }, or { kind: 'edit', seq, hasFiles }.
  #mode = null;
  // The text the box held before an edit took it over, given back after.
  #draft = '';
  // { key, name, size, state: 'uploading' | 'ready' | 'failed', file (once
  // ready: { id, name, type, size }), error, done (a promise) }
  #attachments = [];
  #nextKey = 1;
  #conversationId = null;
  #waiting = false;

  // ui: { form, text, context, contextText, contextCancel, attach, fileInput,
  // files }. handlers: token() (the session's, for uploads), send({ text,
  // files, replyTo }), edit(seq, text), typing(), notice(text).
  constructor(ui, handlers) {
    this.#ui = ui;
    this.#handlers = handlers;
    this.#bind();
  }

  get editing() {
    return this.#mode?.kind === 'edit' ? this.#mode.seq : null;
  }

  get replyingTo() {
    return this.#mode?.kind === 'reply' ? this.#mode.seq : null;
  }

  // A reply or an edit belongs to its conversation; the text and the
  // files go along to another.
  setConversation(id) {
    if (id === this.#conversationId) return;
    this.#conversationId = id;
    this.cancel();
  }

  // Writes a reply to the message `seq`, quoting `from` and `text` above the box.
  replyTo({ seq, from, text }) {
    if (this.#mode?.kind === 'edit') this.cancel();
    this.#mode = { kind: 'reply', seq };
    this.#showContext(`Replying to ${from}`, text, 'Cancel reply');
    this.focus();
  }

  // Edits one's own message `seq`: its text goes in the box, the draft
  // waits aside. The message's files stay as they are.
  edit({ seq, text, hasFiles }) {
    if (this.#mode?.kind !== 'edit') this.#draft = this.#ui.text.value;
    this.#mode = { kind: 'edit', seq, hasFiles };
    this.#ui.text.value = text;
    this.#ui.attach.disabled = true;
    this.#showContext('Editing your message', '', 'Cancel editing');
    this.#resize();
    this.focus();
    this.#ui.text.setSelectionRange(text.length, text.length);
  }

  // Back to a new message; an edit gives the draft back.
  cancel() {
    if (this.#mode?.kind === 'edit') {
      this.#ui.text.value = this.#draft;
      this.#draft = '';
      this.#resize();
    }
    this.#mode = null;
    this.#ui.attach.disabled = false;
    this.#ui.context.hidden = true;
    this.#ui.contextText.replaceChildren();
  }

  focus() {
    this.#ui.text.focus();
  }

  // Uploads each of `files` (a FileList or an array of File) at once.
  attach(files) {
    if (this.#mode?.kind === 'edit') return;
    for (const file of files) {
      const attachment = { key: this.#nextKey++, name: file.name || 'file', size: file.size, state: 'uploading', file: null, error: '' };
      attachment.done = uploadFile(file, this.#handlers.token()).then(
        (uploaded) => {
          attachment.state = 'ready';
          attachment.file = uploaded;
        },
        (error) => {
          attachment.state = 'failed';
          attachment.error = error.message;
          this.#handlers.notice(error.message);
        },
      ).finally(() => this.#renderFiles());
      this.#attachments.push(attachment);
    }
    this.#renderFiles();
  }

  // Forgets everything: signing out.
  reset() {
    this.cancel();
    this.#ui.text.value = '';
    this.#attachments = [];
    this.#conversationId = null;
    this.#renderFiles();
    this.#resize();
  }

  async #submit() {
    const text = this.#ui.text.value.trim();
    if (this.#mode?.kind === 'edit') {
      // An edit may not leave a message of text alone empty: deleting is another thing.
      if (text || this.#mode.hasFiles) this.#handlers.edit(this.#mode.seq, text);
      else return;
      this.cancel();
      return;
    }
    if (this.#waiting) return;
    const uploading = this.#attachments.filter((attachment) => attachment.state === 'uploading');
    if (uploading.length) {
      // Sent once the files are up; not when one fails, so that its error
      // stays in sight and the user chooses.
      this.#waiting = true;
      this.#renderFiles();
      await Promise.all(uploading.map((attachment) => attachment.done));
      this.#waiting = false;
      this.#renderFiles();
      if (uploading.some((attachment) => attachment.state === 'failed')) return;
      this.#submit();
      return;
    }
    const files = this.#attachments.filter((attachment) => attachment.state === 'ready').map((attachment) => attachment.file);
    if (!text && files.length === 0) return;
    this.#handlers.send({ text, files, replyTo: this.replyingTo });
    this.#ui.text.value = '';
    // Failed ones have said why; they do not wait for the next message.
    this.#attachments = [];
    this.#renderFiles();
    this.cancel();
    this.#resize();
  }

  #showContext(title, quoted, cancelLabel) {
    this.#ui.contextText.replaceChildren(element('strong', { text: title }), quoted ? userText('span', 'context-quote', quoted) : '');
    this.#ui.contextCancel.setAttribute('aria-label', cancelLabel);
    this.#ui.contextCancel.title = cancelLabel;
    this.#ui.context.hidden = false;
  }

  // The attachments, each with its state; a failed one says why.
  #renderFiles() {
    const list = this.#ui.files;
    list.hidden = this.#attachments.length === 0;
    list.replaceChildren(
      ...this.#attachments.map((attachment) => {
        const state = { uploading: this.#waiting ? 'Uploading… sent when done' : 'Uploading…', ready: formatSize(attachment.size), failed: attachment.error }[attachment.state];
        const remove = element('button', { className: 'attachment-remove', text: '✕', attrs: { type: 'button', 'aria-label': `Remove ${attachment.name}`, title: 'Remove' } });
        remove.addEventListener('click', () => {
          this.#attachments = this.#attachments.filter((other) => other !== attachment);
          this.#renderFiles();
          this.focus();
        });
        return element('li', { className: 'attachment', attrs: { 'data-state': attachment.state } }, [
          userText('span', 'attachment-name', attachment.name),
          element('span', { className: attachment.state === 'failed' ? 'attachment-error' : 'attachment-state', text: state, attrs: attachment.state === 'failed' ? { role: 'alert' } : {} }),
          remove,
        ]);
      }),
    );
  }

  #resize() {
    const text = this.#ui.text;
    text.style.height = 'auto';
    text.style.height = `${Math.min(text.scrollHeight, MAX_HEIGHT_PX)}px`;
  }

  #bind() {
    const { form, text, contextCancel, attach, fileInput } = this.#ui;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#submit();
    });
    text.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === 'Escape' && this.#mode) {
        event.preventDefault();
        this.cancel();
      }
    });
    text.addEventListener('input', () => {
      this.#resize();
      if (text.value.trim() && this.#mode?.kind !== 'edit') this.#handlers.typing();
    });
    // A pasted image (a screenshot) is attached, not pasted as text.
    text.addEventListener('paste', (event) => {
      const files = event.clipboardData?.files;
      if (!files?.length || this.#mode?.kind === 'edit') return;
      event.preventDefault();
      this.attach(files);
    });
    contextCancel.addEventListener('click', () => {
      this.cancel();
      this.focus();
    });
    attach.addEventListener('click', () => fileInput.click());
    fileInput.addEventListener('change', () => {
      this.attach(fileInput.files);
      // The same file may be chosen again.
      fileInput.value = '';
      this.focus();
    });
  }
}
