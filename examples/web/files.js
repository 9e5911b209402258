// Files beside the WebSocket (docs/PROTOCOL.md, "Files"): uploaded with
// `POST /files`, named in a message's body by the id the server answers
// (`{"text":…, "files":[{"id","name","type","size"}]}`), fetched with
// `GET /files/<id>`. Both carry the session's token in an Authorization
// header, never in a URL (URLs end up in logs and histories), so a file is
// never an <img src> or <a href> to the server: the page fetches it and
// shows an object URL (blob:) of the bytes.

// A file's id: the SHA-256 of its bytes, in hex. Anything else in a body is
// not put in a URL.
const FILE_ID = /^[0-9a-f]{64}$/;
// Object URLs of image previews kept at once; the least recently shown go.
const PREVIEWS_KEPT = 100;
// Bigger images are not fetched just to be looked at in a list: they are
// files to save, like any other.
const PREVIEW_MAX_BYTES = 10 * 1024 * 1024;
// How long a download's object URL lives: the browser has started the
// download long before.
const DOWNLOAD_URL_MS = 60000;
// Bidi controls and the like have no place in a saved file's name
// ("invoice<RLO>fdp.exe" would save as what looks like a PDF), nor do path
// separators.
const UNSAFE_NAME_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069/\\]/g;

// The body of a message the page sends: text, and the files when any.
export function messageBody(text, files = []) {
  return files.length ? { text, files: files.map(({ id, name, type, size }) => ({ id, name, type, size })) } : { text };
}

// The files a body refers to, as [{ id, name, type, size }]: an array of
// ids, or of objects with an id (another client may add less, or more).
// Entries without a valid id are dropped; the rest are what the sender said.
export function filesOf(body) {
  const files = body && typeof body === 'object' && !Array.isArray(body) ? body.files : null;
  if (!Array.isArray(files)) return [];
  return files
    .map((file) => (typeof file === 'string' ? { id: file } : file))
    .filter((file) => file && typeof file === 'object' && typeof file.id === 'string' && FILE_ID.test(file.id))
    .map((file) => ({
      id: file.id,
      name: typeof file.name === 'string' && file.name !== '' ? file.name : `file-${file.id.slice(0, 8)}`,
      type: typeof file.type === 'string' ? file.type : '',
      size: Number.isSafeInteger(file.size) && file.size >= 0 ? file.size : null,
    }));
}

// Images the page previews: the type the sender gave says which to fetch,
// the one the server serves (taken from the bytes) which to show.
export function isImageType(type) {
  return typeof type === 'string' && /^image\/[a-z0-9.+-]+$/i.test(type);
}

// True for a file the message list shows a preview of: an image, by the
// sender's word, of a size worth fetching unasked.
export function previewable(file) {
  return isImageType(file.type) && (file.size === null || file.size <= PREVIEW_MAX_BYTES);
}

const sizeFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export function formatSize(bytes) {
  if (bytes === null || bytes === undefined) return '';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${sizeFormat.format(bytes / 1024)} KB`;
  return `${sizeFormat.format(bytes / (1024 * 1024))} MB`;
}

// A file name fit to save under.
export function safeFileName(name) {
  const cleaned = name.replace(UNSAFE_NAME_CHARACTERS, '_').trim();
  return cleaned === '' || /^\.+$/.test(cleaned) ? 'file' : cleaned;
}

// An upload the server refused, or that never reached it. `message` is for
// the user; `status` is the HTTP status, 0 when there was none.
export class UploadError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// What each refusal means to the person who chose the file.
function uploadFailure(name, status) {
  switch (status) {
    case 413:
      return `“${name}” is too large: this server takes smaller files.`;
    case 507:
      return `“${name}” was not uploaded: your file storage on this server is full.`;
    case 401:
      return `“${name}” was not uploaded: the server did not accept your sign-in.`;
    case 404:
      return 'This server does not take files.';
    default:
      return `“${name}” could not be uploaded (HTTP ${status}).`;
  }
}

// Uploads `file` (a File or Blob with a name) and resolves to the
// { id, name, type, size } a body names it by; rejects with UploadError.
// The server takes the type from the bytes; the one given only helps when
// the bytes say nothing.
export async function uploadFile(file, token) {
  const name = file.name || 'file';
  let response;
  try {
    response = await fetch('/files', {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': file.type || 'application/octet-stream' },
      body: file,
    });
  } catch {
    throw new UploadError(`“${name}” could not be uploaded: the server cannot be reached.`, 0);
  }
  if (!response.ok) throw new UploadError(uploadFailure(name, response.status), response.status);
  let answer;
  try {
    answer = await response.json();
  } catch {
    answer = null;
  }
  if (typeof answer?.id !== 'string' || !FILE_ID.test(answer.id)) {
    throw new UploadError(`“${name}” could not be uploaded: the server's answer names no file.`, response.status);
  }
  return {
    id: answer.id,
    name,
    type: typeof answer.type === 'string' ? answer.type : file.type,
    size: Number.isSafeInteger(answer.size) ? answer.size : file.size,
  };
}

// The bytes of file `id`, with the session's token.
async function fetchFile(id, token) {
  if (!FILE_ID.test(id)) throw new Error('not a file id');
  const response = await fetch(`/files/${id}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.blob();
}

// One session's files: object URLs of image previews, made once per file
// and kept for the few in view (the message list rebuilds rows as it
// scrolls), and downloads.
export class FileUrls {
  #token;
  // id -> { promise, url }, least recently used first.
  #previews = new Map();

  constructor(token) {
    this.#token = token;
  }

  // The preview's object URL when it is ready; else null.
  ready(id) {
    const entry = this.#previews.get(id);
    if (!entry?.url) return null;
    this.#touch(id, entry);
    return entry.url;
  }

  // Resolves to an object URL of image `id`; rejects when it cannot be
  // fetched or the server does not serve it as an image (the sender's
  // `type` is only a claim).
  preview(id) {
    const kept = this.#previews.get(id);
    if (kept) {
      this.#touch(id, kept);
      return kept.promise;
    }
    const entry = { url: null, promise: null };
    entry.promise = fetchFile(id, this.#token).then((blob) => {
      if (!isImageType(blob.type)) throw new Error(`not an image: ${blob.type}`);
      entry.url = URL.createObjectURL(blob);
      // Dropped while it loaded (sign-out, or pushed out of the cache).
      if (this.#previews.get(id) !== entry) URL.revokeObjectURL(entry.url);
      return entry.url;
    });
    // A failure is not kept: the next render may try again.
    entry.promise.catch(() => {
      if (this.#previews.get(id) === entry) this.#previews.delete(id);
    });
    this.#previews.set(id, entry);
    this.#evict();
    return entry.promise;
  }

  // Fetches `file` and saves it under its name. The object URL's type is
  // application/octet-stream whatever the bytes are, so that nothing can
  // open it in the page's origin as a document: it is only ever saved.
  async download(file) {
    const blob = await fetchFile(file.id, this.#token);
    const url = URL.createObjectURL(new Blob([blob], { type: 'application/octet-stream' }));
    const link = document.createElement('a');
    link.href = url;
    link.download = safeFileName(file.name);
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), DOWNLOAD_URL_MS);
  }

  // Revokes every object URL: the session ends.
  clear() {
    for (const entry of this.#previews.values()) if (entry.url) URL.revokeObjectURL(entry.url);
    this.#previews.clear();
  }

  #touch(id, entry) {
    this.#previews.delete(id);
    this.#previews.set(id, entry);
  }

  // An image already drawn keeps showing when its URL is revoked; a row
  // built again for it fetches it again (from the HTTP cache: the server
  // marks files immutable).
  #evict() {
    while (this.#previews.size > PREVIEWS_KEPT) {
      const [id, entry] = this.#previews.entries().next().value;
      this.#previews.delete(id);
      if (entry.url) URL.revokeObjectURL(entry.url);
    }
  }
}
