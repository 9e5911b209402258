"""imbed-host's --config FILE (issue 17): the engine's JSON configuration from
a file, the flags given laid over it, and the host's defaults under it."""
import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import time

import jwt
import pytest
from websockets.asyncio.client import connect

from conftest import (
    HOST_BINARY,
    JWT_SECRET,
    REPO_ROOT,
    STARTUP_TIMEOUT_S,
    HostDidNotStart,
    ImbedHost,
    JsonLinesProcess,
    _stop_cleanly,
)
from test_durability import request, run
from test_python_clients import assert_frame, expect_close, login, login_as, recv_frame
from test_tls_and_web import certificate  # noqa: F401 (a fixture)

EXAMPLE_CONFIG = REPO_ROOT / "examples" / "imbed-host.json"


class ConfiguredHost(ImbedHost):
    """An imbed-host run with exactly these arguments: unlike ImbedHost, no
    --listen or --db of its own, so that the file may set them."""

    def __init__(self, args):
        self.db = None
        JsonLinesProcess.__init__(self, "imbed-host", [str(HOST_BINARY), *args], banner=True)
        self.url, self.port = self._await_listening_line()


@contextlib.contextmanager
def hosted(*args):
    """A host started with args, stopped cleanly (exit 0, only JSON lines) afterwards."""
    try:
        host = ConfiguredHost(args)
    except HostDidNotStart as failure:
        pytest.fail(str(failure))
    try:
        yield host
    finally:
        _stop_cleanly(host)


def write_config(tmp_path, config, name="imbed-host.json"):
    """The path of a file holding config: a dict as JSON, or text as it is."""
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
    return path


def run_to_exit(*args):
    """Run imbed-host with args, expecting it to exit by itself, without
    IMBED_JWT_SECRET from the test's environment; returns the CompletedProcess."""
    return subprocess.run(
        [str(HOST_BINARY), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        env={key: value for key, value in os.environ.items() if key != "IMBED_JWT_SECRET"},
        cwd=REPO_ROOT,
    )


def assert_config_refused(result, path, *fragments):
    """The host exited with the usage status and one line on stderr naming the file and each fragment."""
    assert result.returncode == 2, result
    assert "listening" not in result.stdout, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"imbed-host: --config {path}"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


async def watched_until_refused(url, most):
    """Watch one more user at a time, up to most + 1 of them; the number watched before
    the first refusal, and that refusal (None if all were accepted)."""
    ws, _ = await login_as(url, "watcher")
    async with ws:
        for count in range(most + 1):
            reply = await request(ws, {"type": "watch", "id": f"w{count}", "users": [f"u{count}"]})
            if reply.get("type") != "ok":
                return count, reply
    return most + 1, None


@pytest.mark.parametrize("flags, max_watches", [((), 3), (("--max-watches", "5"), 5)], ids=["file", "flag-over-file"])
def test_a_limit_from_the_file_is_enforced_unless_a_flag_overrides_it(tmp_path, flags, max_watches):
    """limits.max_watches is 3 in the file: the fourth watched user is refused;
    --max-watches 5 replaces that key alone, and the file's auth still holds."""
    path = write_config(tmp_path, {"auth": {"mode": "dev"}, "limits": {"max_watches": 3}})
    with hosted("--config", str(path), "--listen", "127.0.0.1:0", *flags) as host:
        accepted, refusal = run(watched_until_refused(host.url, max_watches))
    assert accepted == max_watches, f"refused after {accepted} watched users: {refusal}"
    assert_frame(refusal, type="error", id=f"w{max_watches}", code="bad_request")


def test_the_file_sets_the_address_tls_and_the_host_id(tmp_path, certificate):  # noqa: F811
    """With no --listen, the banner shows the file's address, and wss:// for its tls;
    "send" goes from the first of its host_ids, which no user may sign in as."""
    cert, key = certificate
    path = write_config(tmp_path, {
        "listen": "127.0.0.1:0",
        "tls": {"cert_path": str(cert), "key_path": str(key)},
        "auth": {"mode": "dev"},
        "host_ids": ["bot", "admin"],
    })
    with hosted("--config", str(path)) as host:
        assert host.url.startswith("wss://127.0.0.1:"), host.url
        trust = ssl.create_default_context(cafile=str(cert))

        async def scenario():
            async with connect(f"{host.url}?token=alice", ssl=trust) as alice:
                assert_frame(await recv_frame(alice), type="welcome", user="alice")
                host.command('send alice {"text":"from the host"}')
                assert_frame(await recv_frame(alice), type="msg", body={"text": "from the host"}, **{"from": "bot"})
            for reserved in ("bot", "admin"):
                async with connect(f"{host.url}?token={reserved}", ssl=trust) as impostor:
                    assert_frame(await recv_frame(impostor), type="error", code="unauthorized")
        run(scenario())


def test_dev_auth_replaces_the_files_jwt_auth(tmp_path):
    """--dev-auth over a file's JWT section (secret, issuer) is dev mode alone,
    which the engine would refuse with a leftover secret or issuer."""
    path = write_config(tmp_path, {"auth": {"mode": "jwt", "secret": JWT_SECRET, "issuer": "me"}})
    with hosted("--config", str(path), "--listen", "127.0.0.1:0", "--dev-auth") as host:
        async def scenario():
            ws, _ = await login_as(host.url, "alice")
            await ws.close()
        run(scenario())


def test_a_jwt_secret_flag_keeps_the_files_issuer(tmp_path):
    """The file says JWTs must come from issuer "me"; --jwt-secret adds the
    secret, and a token without that issuer is still refused."""
    path = write_config(tmp_path, {"auth": {"mode": "jwt", "issuer": "me"}})
    with hosted("--config", str(path), "--listen", "127.0.0.1:0", "--jwt-secret", JWT_SECRET) as host:
        async def scenario():
            for claims, accepted in (({"iss": "me"}, True), ({}, False), ({"iss": "someone-else"}, False)):
                token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600, **claims}, JWT_SECRET, "HS256")
                ws, first = await login(host.url, token)
                if accepted:
                    assert_frame(first, type="welcome", user="alice")
                    await ws.close()
                else:
                    assert_frame(first, type="error", code="unauthorized")
                    await expect_close(ws, 1008)
        run(scenario())


def test_the_example_config_file_is_accepted():
    """examples/imbed-host.json, with the secret its auth leaves out (and no
    imbed.db written into the repository)."""
    with hosted("--config", str(EXAMPLE_CONFIG), "--listen", "127.0.0.1:0", "--db", ":memory:",
                "--jwt-secret", JWT_SECRET) as host:
        async def scenario():
            token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600}, JWT_SECRET, "HS256")
            ws, first = await login(host.url, token)
            assert_frame(first, type="welcome", user="alice")
            await ws.close()
        run(scenario())


@pytest.mark.parametrize("content, fragment", [
    (None, "No such file or directory"),
    ("[1, 2]", "expected a JSON object"),
    ('{\n  "limits": {\n', "line 3"),
], ids=["missing", "not-an-object", "not-json"])
def test_a_file_that_is_not_a_json_object_exits_2_naming_it(tmp_path, content, fragment):
    path = tmp_path / "imbed-host.json" if content is None else write_config(tmp_path, content)
    result = run_to_exit("--config", str(path), "--dev-auth", "--listen", "127.0.0.1:0")
    assert_config_refused(result, path, fragment)


def test_an_unknown_key_in_the_file_exits_2_with_the_engines_message(tmp_path):
    """The engine's message names the field; its position, which points into
    the merged configuration rather than the file, is left out."""
    path = write_config(tmp_path, {"auth": {"mode": "dev"}, "limits": {"max_watchez": 3}})
    result = run_to_exit("--config", str(path), "--listen", "127.0.0.1:0")
    assert_config_refused(result, path, "invalid configuration: limits.max_watchez: unknown field")
    assert " at line " not in result.stderr, result.stderr


def test_a_value_the_engine_refuses_at_start_exits_2_naming_the_file(tmp_path):
    """The engine checks the web root when the server starts, not when it is
    created; that refusal is reported the same way."""
    path = write_config(tmp_path, {"auth": {"mode": "dev"}, "web_root": str(tmp_path / "missing")})
    result = run_to_exit("--config", str(path), "--listen", "127.0.0.1:0")
    assert_config_refused(result, path, "web_root")


def test_authentication_is_still_required_with_a_file(tmp_path):
    path = write_config(tmp_path, {"limits": {"max_watches": 3}})
    result = run_to_exit("--config", str(path), "--listen", "127.0.0.1:0")
    assert result.returncode == 2, result
    assert '"auth" in the --config file is required' in result.stderr, result.stderr
