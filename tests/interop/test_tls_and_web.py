"""imbed-host's --tls-cert/--tls-key and its web root, as outside clients meet them."""
import asyncio
import json
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
from conftest import REPO_ROOT, _start_host, _stop_cleanly
from websockets.asyncio.client import connect

TEST_TIMEOUT_S = 20


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for localhost and 127.0.0.1, made by the openssl command."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_host(certificate):
    cert, key = certificate
    yield from _serve(["--dev-auth", "--tls-cert", str(cert), "--tls-key", str(key)])


def _serve(args):
    host = _start_host(args)
    yield host
    _stop_cleanly(host)


def test_the_banner_says_wss_and_python_clients_chat_over_tls(tls_host, certificate):
    assert tls_host.url.startswith("wss://127.0.0.1:")
    trust = ssl.create_default_context(cafile=str(certificate[0]))

    async def scenario():
        async with connect(f"{tls_host.url}?token=alice", ssl=trust) as alice, \
                connect(f"{tls_host.url}?token=bob", ssl=trust) as bob:
            assert json.loads(await alice.recv())["type"] == "welcome"
            assert json.loads(await bob.recv())["type"] == "welcome"
            await alice.send(json.dumps({"type": "send", "id": "t1", "to": "bob", "body": {"text": "tls"}}))
            assert json.loads(await alice.recv())["type"] == "ack"
            assert json.loads(await bob.recv())["body"] == {"text": "tls"}
    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_host):
    async def scenario():
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(f"{tls_host.url}?token=eve", ssl=ssl.create_default_context(), open_timeout=5)
    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_tls_cert_without_key_is_a_usage_error(certificate):
    from conftest import HOST_BINARY
    result = subprocess.run([str(HOST_BINARY), "--dev-auth", "--tls-cert", str(certificate[0])],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "--tls-cert and --tls-key go together" in result.stderr


def _get(url, context=None):
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as refusal:
        return refusal.code, refusal.headers.get("Content-Type"), refusal.read().decode()


def test_the_host_serves_the_web_client_health_and_metrics(dev_host):
    base = dev_host.url.removesuffix("/ws").replace("ws://", "http://")
    status, content_type, page = _get(base + "/")
    assert (status, content_type) == (200, "text/html")
    assert page == (REPO_ROOT / "examples/web/index.html").read_text()
    assert _get(base + "/healthz")[::2] == (200, "ok\n")
    status, content_type, metrics = _get(base + "/metrics")
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert "imbed_connections 0" in metrics.splitlines()
    assert _get(base + "/../Makefile")[0] == 404


def test_no_web_serves_no_files_but_keeps_the_endpoints():
    host = _start_host(["--dev-auth", "--no-web"])
    try:
        base = host.url.removesuffix("/ws").replace("ws://", "http://")
        assert _get(base + "/")[0] == 404
        assert _get(base + "/healthz")[0] == 200
    finally:
        _stop_cleanly(host)


def test_https_serves_the_page_with_the_certificate(tls_host, certificate):
    base = tls_host.url.removesuffix("/ws").replace("wss://127.0.0.1", "https://localhost")
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    assert _get(base + "/healthz", trust)[::2] == (200, "ok\n")
