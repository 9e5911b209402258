"""Files (issue 16) through imbed-host --files DIR.

Python `websockets` clients and plain HTTP (`http.client` on a raw socket)
against `imbed-host`, checking docs/PROTOCOL.md, "Files": the upload's
token, its SHA-256 id and the type taken from the bytes (never a type that
runs script), `files.max_bytes` (413) and `files.quota_bytes` (507) leaving
nothing in the directory, messages referring to files (`body.files`) and who
may then download them (ETag, Cache-Control, ranges, 404 for anyone else),
forwarding, a delete dropping the reference, unknown files refused, the
lifetime of unreferenced uploads, and no `/files` without `--files`.
"""

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import select
import socket
import struct
import time
import uuid
import zlib
from urllib.parse import quote

import jwt
import pytest

from conftest import JWT_SECRET, _start_host, _stop_cleanly
from test_config_file import write_config
from test_durability import run
from test_messages import acked, delete_frame, drain, edit_frame, found, history, join, leave, refused, search, send
from test_python_clients import an_hour_from_now, assert_frame, expect_pong, login_as, recv_frame

HTTP_TIMEOUT_S = 10
CACHE_CONTROL = {"private", "max-age=31536000", "immutable"}
OCTET_STREAM = "application/octet-stream"
# How long the host may take to sweep an unreferenced upload past files.unreferenced_ms.
SWEEP_TIMEOUT_S = 30


# --- hosts -------------------------------------------------------------------------


class FilesHost:
    """A running host and the directory of its files."""

    def __init__(self, host, files_dir):
        self.host = host
        self.url = host.url
        self.port = host.port
        self.dir = files_dir


@contextlib.contextmanager
def files_host(tmp_path, config=None, files=True, auth=("--dev-auth",)):
    """imbed-host with --files tmp_path/files (unless files is False) and config
    (a dict) as its --config file; stopped cleanly afterwards."""
    files_dir = tmp_path / f"files-{uuid.uuid4().hex[:8]}"
    args = list(auth)
    if files:
        files_dir.mkdir()
        args += ["--files", str(files_dir)]
    if config is not None:
        args += ["--config", str(write_config(tmp_path, config, f"imbed-host-{uuid.uuid4().hex[:8]}.json"))]
    host = _start_host(args)
    try:
        yield FilesHost(host, files_dir)
    finally:
        _stop_cleanly(host)


def snapshot(directory):
    """{relative path: size} of every regular file under directory, temporary ones included."""
    result = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                result[os.path.relpath(path, directory)] = os.path.getsize(path)
    return result


# --- HTTP --------------------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {dict(self.headers)} {self.body[:200]!r}>"


def http_request(port, method, path, headers=None, body=b"", wait_for_early_answer=False, send_only=None):
    """One request on its own connection; returns a Response.

    The body goes out in pieces, and stops when the server has answered
    already (it may refuse an upload from its headers alone). With
    wait_for_early_answer, the server has a moment to answer the headers
    before any of the body is sent. With send_only, only that many bytes of
    the body are sent and the connection is closed: None is returned.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S)
    with sock:
        fields = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
        if body or method == "POST":
            fields["Content-Length"] = str(len(body))
        fields.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v is not None)
        sock.sendall(head.encode("latin-1") + b"\r\n")
        if wait_for_early_answer:
            select.select([sock], [], [], 0.5)
        view = memoryview(body)[: len(body) if send_only is None else send_only]
        sent = 0
        try:
            while sent < len(view):
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sent += sock.send(view[sent: sent + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        if send_only is not None:
            return None
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        data = response.read()
        return Response(response.status, response.headers, data)


def bearer(token):
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


def upload(host, token, data, content_type=None, via="header", **kwargs):
    headers = {"Content-Type": content_type}
    path = "/files"
    if via == "header":
        headers.update(bearer(token))
    else:
        path += f"?token={quote(token, safe='')}"
    return http_request(host.port, "POST", path, headers, data, **kwargs)


def uploaded(host, token, data, content_type=None, via="header"):
    """Upload data, assert the 201 and its answer, and return the file's id."""
    response = upload(host, token, data, content_type, via)
    assert response.status == 201, response
    answer = response.json()
    assert answer["id"] == hashlib.sha256(data).hexdigest(), answer
    assert answer["size"] == len(data), answer
    assert isinstance(answer.get("type"), str), answer
    return answer["id"]


def download(host, token, file_id, via="header", headers=None):
    fields = dict(headers or {})
    path = f"/files/{file_id}"
    if via == "header":
        fields.update(bearer(token))
    elif token is not None:
        path += f"?token={quote(token, safe='')}"
    return http_request(host.port, "GET", path, fields)


def media_type(value):
    return (value or "").split(";")[0].strip().lower()


def is_attachment(response):
    return (response.header("Content-Disposition") or "").strip().lower().startswith("attachment")


def assert_served(response, file_id, data, content_type):
    """A 200 with the bytes and the headers of PROTOCOL.md, "Download"."""
    assert response.status == 200, response
    assert response.body == data, response
    assert media_type(response.header("Content-Type")) == content_type, response
    etag = response.header("ETag")
    assert etag in (file_id, f'"{file_id}"'), response
    directives = {d.strip().lower() for d in (response.header("Cache-Control") or "").split(",")}
    assert directives == CACHE_CONTROL, response


def assert_not_served(host, token, file_id):
    """The 404 a file that does not exist gets, and not a byte of it."""
    response = download(host, token, file_id)
    missing_id = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    missing = download(host, token, missing_id)
    assert missing.status == 404, missing
    assert response.status == 404, response
    assert response.body.replace(file_id.encode(), b"<id>") == missing.body.replace(missing_id.encode(), b"<id>")


async def in_thread(function, *args, **kwargs):
    return await asyncio.to_thread(function, *args, **kwargs)


# --- file contents -----------------------------------------------------------------


def png_bytes(size=16):
    """A real PNG of size x size random pixels, different each time."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = b"".join(b"\x00" + os.urandom(size * 3) for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def unique():
    return os.urandom(64)


SNIFFED = {
    "png": (lambda: png_bytes(), "image/png"),
    "jpeg": (lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + unique() + b"\xff\xd9",
             "image/jpeg"),
    "gif": (lambda: b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + unique() + b"\x3b", "image/gif"),
    "webp": (lambda: b"RIFF" + struct.pack("<I", 4 + 8 + 64) + b"WEBPVP8 " + struct.pack("<I", 64) + unique(),
             "image/webp"),
    "pdf": (lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + unique() + b"\n%%EOF\n", "application/pdf"),
    "mp4": (lambda: b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + unique(), "video/mp4"),
    "mp3": (lambda: b"ID3\x03\x00\x00\x00\x00\x00\x0f" + bytes(15) + b"\xff\xfb\x90\x64" + unique(), "audio/mpeg"),
    "ogg": (lambda: b"OggS\x00\x02" + bytes(22) + b"\x01vorbis" + unique(), "audio/ogg"),
}


# --- upload ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SNIFFED))
def test_an_upload_is_named_by_its_sha256_and_typed_by_its_bytes(tmp_path, kind):
    make, expected_type = SNIFFED[kind]
    data = make()
    with files_host(tmp_path) as host:
        # The request says text/plain; the bytes say otherwise, and win.
        response = upload(host, "alice", data, "text/plain")
        assert response.status == 201, response
        assert response.json() == {"id": hashlib.sha256(data).hexdigest(), "size": len(data), "type": expected_type}
        file_id = response.json()["id"]
        served = download(host, "alice", file_id)
        assert_served(served, file_id, data, expected_type)
        # Images, audio, video and PDF are shown inline.
        assert not is_attachment(served), served


@pytest.mark.parametrize(
    "data, content_type",
    [
        pytest.param(b"<html><body><script>alert(document.cookie)</script></body></html>", "text/html", id="html"),
        pytest.param(b"<html><script>alert(1)</script></html>", "TEXT/HTML; charset=utf-8", id="html-uppercase"),
        pytest.param(b"<!DOCTYPE html><script>alert(1)</script>", None, id="html-no-type"),
        pytest.param(b"<script>alert(1)</script>", "application/octet-stream", id="script-as-octet-stream"),
        pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/svg+xml",
                     id="svg"),
        pytest.param(b'<?xml version="1.0"?><x:script xmlns:x="http://www.w3.org/1999/xhtml">alert(1)</x:script>',
                     "application/xml", id="xml"),
        pytest.param(b'<?xml version="1.0"?><a>b</a>', "text/xml", id="text-xml"),
        pytest.param(b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>',
                     "application/xhtml+xml", id="xhtml"),
        pytest.param(b"alert(document.cookie)", "application/javascript", id="javascript"),
        pytest.param(b"alert(document.cookie)", "text/javascript", id="text-javascript"),
    ],
)
def test_a_type_that_could_run_script_is_never_kept(tmp_path, data, content_type):
    data += uuid.uuid4().hex.encode()
    with files_host(tmp_path) as host:
        response = upload(host, "alice", data, content_type)
        assert response.status == 201, response
        assert response.json()["type"] == OCTET_STREAM, response
        file_id = response.json()["id"]
        served = download(host, "alice", file_id)
        assert_served(served, file_id, data, OCTET_STREAM)
        assert is_attachment(served), served
        # Not by the query token, the way an <img src> or a link would load it, either.
        served = download(host, "alice", file_id, via="query")
        assert media_type(served.header("Content-Type")) == OCTET_STREAM and is_attachment(served), served


def test_a_harmless_declared_type_is_kept_and_served_as_an_attachment(tmp_path):
    data = f"just some words {uuid.uuid4()}\n".encode()
    with files_host(tmp_path) as host:
        response = upload(host, "alice", data, "text/plain")
        assert response.status == 201, response
        assert media_type(response.json()["type"]) == "text/plain", response
        file_id = response.json()["id"]
        served = download(host, "alice", file_id)
        assert_served(served, file_id, data, "text/plain")
        # Only images, audio, video and PDF are inline.
        assert is_attachment(served), served


def test_the_same_bytes_uploaded_twice_are_one_file(tmp_path):
    data = png_bytes()
    with files_host(tmp_path) as host:
        first = uploaded(host, "alice", data, "image/png")
        files = snapshot(host.dir)
        assert files, "the upload left nothing in the files directory"
        assert first == uploaded(host, "alice", data, "image/png")
        assert first == uploaded(host, "bob", data, "image/png")
        assert snapshot(host.dir) == files


def test_the_same_bytes_declared_as_another_type_are_still_one_file_with_one_type(tmp_path):
    """Bytes that say nothing of their type take the first upload's harmless
    type; a second upload of them, declared otherwise, names the same file:
    its answer has the type the file is served with."""
    data = f"plain words {uuid.uuid4()}\n".encode()
    with files_host(tmp_path) as host:
        first = upload(host, "alice", data, "text/plain")
        assert first.status == 201 and media_type(first.json()["type"]) == "text/plain", first
        for user, declared in (("bob", "text/html"), ("alice", OCTET_STREAM)):
            again = upload(host, user, data, declared)
            assert again.status == 201, again
            served = download(host, user, first.json()["id"])
            assert served.status == 200, served
            assert again.json() == first.json(), (declared, again, served.header("Content-Type"))
            assert media_type(served.header("Content-Type")) == "text/plain", served


@pytest.mark.parametrize(
    "headers, path",
    [
        pytest.param({}, "/files", id="no-token"),
        pytest.param({"Authorization": "Bearer not a valid id"}, "/files", id="invalid-token"),
        pytest.param({"Authorization": "Bearer host"}, "/files", id="reserved-host-id"),
        pytest.param({"Authorization": "Basic YWxpY2U6YWxpY2U="}, "/files", id="basic-auth"),
        pytest.param({"Authorization": "Bearer "}, "/files", id="empty-bearer"),
        pytest.param({}, "/files?token=", id="empty-query-token"),
        pytest.param({}, "/files?token=bad%20token", id="invalid-query-token"),
    ],
)
def test_an_upload_without_a_valid_token_is_401_and_keeps_nothing(tmp_path, headers, path):
    data = png_bytes()
    with files_host(tmp_path) as host:
        before = snapshot(host.dir)
        response = http_request(host.port, "POST", path, {"Content-Type": "image/png", **headers}, data)
        assert response.status == 401, response
        assert snapshot(host.dir) == before
        # The same upload with a token is fine, by the header or the query.
        file_id = uploaded(host, "alice", data, "image/png", via="query")
        assert download(host, "alice", file_id).status == 200


def test_uploads_take_the_jwt_the_websocket_takes(tmp_path):
    data = png_bytes()
    good = jwt.encode({"sub": "alice", "exp": an_hour_from_now()}, JWT_SECRET, algorithm="HS256")
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 60}, JWT_SECRET, algorithm="HS256")
    wrong_key = jwt.encode({"sub": "alice", "exp": an_hour_from_now()}, "another secret " * 5, algorithm="HS256")
    with files_host(tmp_path, auth=("--jwt-secret", JWT_SECRET)) as host:
        for token in ("alice", expired, wrong_key):
            assert upload(host, token, data, "image/png").status == 401, token
        file_id = uploaded(host, good, data, "image/png")
        assert_served(download(host, good, file_id), file_id, data, "image/png")
        assert download(host, expired, file_id).status in (401, 404)


# --- limits ------------------------------------------------------------------------


def test_an_upload_past_max_bytes_is_413_and_leaves_nothing(tmp_path):
    with files_host(tmp_path, {"files": {"max_bytes": 1000}}) as host:
        before = snapshot(host.dir)
        response = upload(host, "alice", os.urandom(1001), OCTET_STREAM)
        assert response.status == 413, response
        assert snapshot(host.dir) == before
        big = upload(host, "alice", os.urandom(4 * 1024 * 1024), OCTET_STREAM, wait_for_early_answer=True)
        assert big.status == 413, big
        assert snapshot(host.dir) == before
        # Exactly max_bytes is fine.
        data = os.urandom(1000)
        file_id = uploaded(host, "alice", data, OCTET_STREAM)
        assert_served(download(host, "alice", file_id), file_id, data, OCTET_STREAM)
        assert snapshot(host.dir) != before


def test_an_upload_past_the_quota_is_507_leaves_nothing_and_the_quota_is_per_user(tmp_path):
    with files_host(tmp_path, {"files": {"max_bytes": 2000, "quota_bytes": 3000}}) as host:
        uploaded(host, "alice", os.urandom(1200), OCTET_STREAM)
        uploaded(host, "alice", os.urandom(1200), OCTET_STREAM)
        before = snapshot(host.dir)
        third = os.urandom(1200)
        response = upload(host, "alice", third, OCTET_STREAM)
        assert response.status == 507, response
        assert snapshot(host.dir) == before
        assert download(host, "alice", hashlib.sha256(third).hexdigest()).status == 404
        # A smaller one that fits still goes in, and bob has a quota of his own.
        uploaded(host, "alice", os.urandom(500), OCTET_STREAM)
        uploaded(host, "bob", os.urandom(1200), OCTET_STREAM)
        uploaded(host, "bob", os.urandom(1200), OCTET_STREAM)
        assert upload(host, "alice", os.urandom(200), OCTET_STREAM).status == 507


def test_an_upload_cut_short_leaves_no_partial_file(tmp_path):
    with files_host(tmp_path) as host:
        before = snapshot(host.dir)
        data = os.urandom(200_000)
        http_request(host.port, "POST", "/files", {"Authorization": "Bearer alice", "Content-Type": OCTET_STREAM},
                     data, send_only=100_000)
        deadline = time.monotonic() + 5
        while snapshot(host.dir) != before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert snapshot(host.dir) == before
        assert download(host, "alice", hashlib.sha256(data).hexdigest()).status == 404
        # The host still takes uploads.
        uploaded(host, "alice", data, OCTET_STREAM)


# --- messages referring to files, and downloads -------------------------------------


def test_a_recipient_downloads_a_file_a_message_refers_to_and_nobody_else_does(tmp_path):
    with files_host(tmp_path) as host:
        async def scenario():
            data = png_bytes(32)
            assert len(data) > 200
            file_id = await in_thread(uploaded, host, "alice", data, "text/plain")
            plain = os.urandom(300)
            plain_id = await in_thread(uploaded, host, "alice", plain, OCTET_STREAM)
            # Before any message refers to it, only its uploader may have it.
            for user in ("bob", "carol"):
                await in_thread(assert_not_served, host, user, file_id)
            assert_served(await in_thread(download, host, "alice", file_id), file_id, data, "image/png")

            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                body = {"text": "the plan", "files": [{"id": file_id, "name": "plan.png"}]}
                ack = await send(alice, "m1", body, to="bob")
                # The body travels unchanged.
                assert_frame(await recv_frame(bob), type="msg", seq=ack["seq"], body=body)
                # A file id alone is a reference too.
                await send(alice, "m2", {"files": [plain_id]}, to="bob")
                await recv_frame(bob)

            served = await in_thread(download, host, "bob", file_id)
            assert_served(served, file_id, data, "image/png")
            assert not is_attachment(served), served
            assert_served(await in_thread(download, host, "bob", file_id, via="query"), file_id, data, "image/png")
            assert_served(await in_thread(download, host, "bob", plain_id), plain_id, plain, OCTET_STREAM)

            end = len(data) - 1
            for spec, first, last in (("0-99", 0, 99), ("100-199", 100, 199), ("7-7", 7, 7),
                                      (f"{end - 9}-", end - 9, end), ("-10", end - 9, end)):
                part = await in_thread(download, host, "bob", file_id, headers={"Range": f"bytes={spec}"})
                assert part.status == 206, part
                assert part.body == data[first: last + 1], part
                assert part.header("Content-Range") == f"bytes {first}-{last}/{len(data)}", part
                assert int(part.header("Content-Length")) == last - first + 1, part
            # Neither carol, nor anyone without a token, nor the uploader's token in another's name.
            await in_thread(assert_not_served, host, "carol", file_id)
            anonymous = await in_thread(download, host, None, file_id)
            assert anonymous.status in (401, 404) and data not in anonymous.body, anonymous
            assert (await in_thread(download, host, "not a token", file_id)).status in (401, 404)

        run(scenario())


def test_in_a_group_members_download_and_a_member_who_left_no_longer_does(tmp_path):
    with files_host(tmp_path) as host:
        async def scenario():
            data = png_bytes()
            file_id = await in_thread(uploaded, host, "alice", data, "image/png")
            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                await join(alice, "team", "j1")
                await join(bob, "team", "j2")
                await recv_frame(alice)
                await send(alice, "m1", {"text": "team plan", "files": [{"id": file_id}]}, group="team")
                await recv_frame(bob)
                assert_served(await in_thread(download, host, "bob", file_id), file_id, data, "image/png")
                await in_thread(assert_not_served, host, "carol", file_id)
                await leave(bob, "team", "l1")
                await recv_frame(alice)
                await in_thread(assert_not_served, host, "bob", file_id)
                assert_served(await in_thread(download, host, "alice", file_id), file_id, data, "image/png")

        run(scenario())


def test_a_file_seen_in_a_conversation_may_be_forwarded(tmp_path):
    with files_host(tmp_path) as host:
        async def scenario():
            data = png_bytes()
            file_id = await in_thread(uploaded, host, "alice", data, "image/png")
            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                # bob may not refer to a file he has never seen.
                await refused(bob, {"type": "send", "id": "b0", "to": "carol", "body": {"files": [file_id]}},
                              "not_found")
                await send(alice, "m1", {"files": [{"id": file_id, "name": "a.png"}]}, to="bob")
                await recv_frame(bob)
                await in_thread(assert_not_served, host, "carol", file_id)
                await send(bob, "b1", {"text": "look", "files": [{"id": file_id, "name": "fwd.png"}]}, to="carol")
                assert_served(await in_thread(download, host, "carol", file_id), file_id, data, "image/png")

        run(scenario())


def test_a_delete_drops_the_reference_the_uploader_keeps_the_file(tmp_path):
    with files_host(tmp_path) as host:
        async def scenario():
            data = png_bytes()
            file_id = await in_thread(uploaded, host, "alice", data, "image/png")
            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                ack = await send(alice, "m1", {"files": [{"id": file_id}]}, to="bob")
                await recv_frame(bob)
                assert_served(await in_thread(download, host, "bob", file_id), file_id, data, "image/png")
                await acked(alice, delete_frame("d1", ack["conv"], ack["seq"]))
                await recv_frame(bob)
                await in_thread(assert_not_served, host, "bob", file_id)
                assert_served(await in_thread(download, host, "alice", file_id), file_id, data, "image/png")

        run(scenario())


def test_referring_to_an_unknown_file_is_not_found_and_stores_nothing(tmp_path):
    with files_host(tmp_path) as host:
        async def scenario():
            carols = await in_thread(uploaded, host, "carol", png_bytes(), "image/png")
            mine_data = png_bytes()
            mine = await in_thread(uploaded, host, "alice", mine_data, "image/png")
            never = hashlib.sha256(b"never uploaded " + uuid.uuid4().bytes).hexdigest()
            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                bodies = [
                    {"files": [never]},
                    {"text": "x", "files": [{"id": never, "name": "x.png"}]},
                    {"files": [mine, never]},
                    {"files": [{"id": carols}]},
                ]
                for n, body in enumerate(bodies):
                    await refused(alice, {"type": "send", "id": f"x{n}", "to": "bob", "body": body}, "not_found")
                await expect_pong(bob, "nothing-delivered")
                await in_thread(assert_not_served, host, "bob", mine)
                await in_thread(assert_not_served, host, "alice", carols)
                ack = await send(alice, "m1", {"text": "first"}, to="bob")
                assert ack["seq"] == 1, ack
                await recv_frame(bob)

                # An edit refers to files the same way: an unknown one is refused, a known one let through.
                await refused(alice, edit_frame("e1", "dm:alice:bob", 1, {"text": "e", "files": [never]}), "not_found")
                await expect_pong(bob, "no-edit-delivered")
                messages = await history(alice, "dm:alice:bob")
                assert [(m["seq"], m["body"]) for m in messages] == [(1, {"text": "first"})], messages
                await in_thread(assert_not_served, host, "bob", mine)
                await acked(alice, edit_frame("e2", "dm:alice:bob", 1, {"text": "with", "files": [{"id": mine}]}))
                await recv_frame(bob)
                assert_served(await in_thread(download, host, "bob", mine), mine, mine_data, "image/png")
                await drain(alice, "end")

        run(scenario())


def test_an_unreferenced_upload_goes_after_unreferenced_ms_and_leaves_the_quota(tmp_path):
    """An upload no message refers to, and one whose only message was deleted,
    are removed (from downloads, files.dir and the quota); one a message
    refers to stays."""
    config = {"files": {"unreferenced_ms": 300, "max_bytes": 3000, "quota_bytes": 4600}}
    with files_host(tmp_path, config) as host:
        async def scenario():
            kept_data = png_bytes()
            kept = await in_thread(uploaded, host, "alice", kept_data, "image/png")
            dropped = await in_thread(uploaded, host, "alice", png_bytes(), "image/png")
            alice, _ = await login_as(host.url, "alice")
            async with alice:
                await send(alice, "m1", {"files": [kept]}, to="bob")
                ack = await send(alice, "m2", {"files": [dropped]}, to="bob")
                await acked(alice, delete_frame("d1", ack["conv"], ack["seq"]))
            gone = await in_thread(uploaded, host, "alice", os.urandom(2500), OCTET_STREAM)
            with_all = snapshot(host.dir)
            deadline = time.monotonic() + SWEEP_TIMEOUT_S
            for file_id in (gone, dropped):
                while (await in_thread(download, host, "alice", file_id)).status != 404:
                    assert time.monotonic() < deadline, f"{file_id} still served after {SWEEP_TIMEOUT_S} s"
                    await asyncio.sleep(0.5)
            while len(snapshot(host.dir)) > len(with_all) - 2:
                assert time.monotonic() < deadline, f"unreferenced files still in the files directory: {with_all}"
                await asyncio.sleep(0.5)
            # The file a message refers to stays, and the bytes of the one gone left alice's quota.
            assert_served(await in_thread(download, host, "alice", kept), kept, kept_data, "image/png")
            assert_served(await in_thread(download, host, "bob", kept), kept, kept_data, "image/png")
            await in_thread(uploaded, host, "alice", os.urandom(2500), OCTET_STREAM)

        run(scenario(), timeout=SWEEP_TIMEOUT_S + 20)


def test_search_finds_a_message_by_the_name_of_its_file(tmp_path):
    """PROTOCOL.md, "Search": {"text":"hi","files":[{"name":"zebra.png"}]} has the words hi, zebra, png."""
    with files_host(tmp_path) as host:
        async def scenario():
            file_id = await in_thread(uploaded, host, "alice", png_bytes(), "image/png")
            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                await send(alice, "m1", {"text": "hi", "files": [{"id": file_id, "name": "zebra.png"}]}, to="bob")
                await recv_frame(bob)
                for ws in (alice, bob):
                    assert found(await search(ws, "q1", "zebra png")) == [("dm:alice:bob", 1)]
                    assert found(await search(ws, "q2", "hi zebra")) == [("dm:alice:bob", 1)]
                    # The keys are not words of the body, nor is the file id taken apart.
                    assert found(await search(ws, "q3", "name")) == []
                    assert found(await search(ws, "q4", "files")) == []

        run(scenario())


# --- without --files ---------------------------------------------------------------


@pytest.mark.parametrize("web", [(), ("--no-web",)], ids=["with-the-web-root", "no-web"])
def test_without_files_there_is_no_files_endpoint(tmp_path, web):
    with files_host(tmp_path, files=False, auth=("--dev-auth", *web)) as host:
        data = png_bytes()
        assert upload(host, "alice", data, "image/png").status == 404
        assert download(host, "alice", hashlib.sha256(data).hexdigest()).status == 404
