"""imbed-host's --max-connections and --allow-origin, as clients meet them."""
import asyncio
import socket
import time

import pytest
from conftest import _start_host, _stop_cleanly
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

TEST_TIMEOUT_S = 20


def refused_status(url, **options):
    """The HTTP status with which the server refuses the handshake."""
    async def attempt():
        with pytest.raises(InvalidStatus) as refusal:
            async with connect(url, open_timeout=5, **options):
                pass
        return refusal.value.response.status_code
    return asyncio.run(asyncio.wait_for(attempt(), TEST_TIMEOUT_S))


def test_connections_beyond_the_limit_get_503(limited_host):
    async def scenario():
        first = await connect(f"{limited_host.url}?token=a")
        second = await connect(f"{limited_host.url}?token=b")
        assert '"welcome"' in await first.recv()
        assert '"welcome"' in await second.recv()
        with pytest.raises(InvalidStatus) as refusal:
            await connect(f"{limited_host.url}?token=c", open_timeout=5)
        assert refusal.value.response.status_code == 503
        await first.close()
        await second.close()
    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_browsers_from_other_origins_get_403(limited_host):
    url = f"{limited_host.url}?token=o"
    assert refused_status(url, origin="https://evil.example") == 403

    async def allowed():
        async with connect(url, origin="https://good.example") as browser:
            assert '"welcome"' in await browser.recv()
        async with connect(url) as native:  # no Origin header at all
            assert '"welcome"' in await native.recv()
    asyncio.run(asyncio.wait_for(allowed(), TEST_TIMEOUT_S))


def test_a_silent_connection_is_dropped_at_the_handshake_timeout():
    host = _start_host(["--dev-auth", "--handshake-timeout-ms", "300"])
    try:
        with socket.create_connection(("127.0.0.1", host.port), timeout=5) as raw:
            raw.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # the request never ends
            started = time.monotonic()
            assert raw.recv(16) == b"", "the server answered an unfinished request"
            assert time.monotonic() - started < 3, "dropped long after the 300 ms deadline"
    finally:
        _stop_cleanly(host)
