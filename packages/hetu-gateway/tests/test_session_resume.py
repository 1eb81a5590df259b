"""Session resume: only a hello proving the session's secret gets its login, a
replayed resume hello is refused, and a resume closes the previous connection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hetu.pipeline import ClientHandshake, Pipeline, Welcome
from hetu.protocol import Call, encoder, server_msg_decoder

from .conftest import url_of

pytestmark = pytest.mark.usefixtures("fake_logic")


class Raw:
    """A hand-driven connection: the test picks the hello."""

    def __init__(self, ws: ClientConnection, hs: ClientHandshake) -> None:
        self.ws, self.hs = ws, hs
        self.welcome: Welcome | None = None
        self.pipeline: Pipeline | None = None
        self._ids = 0

    @classmethod
    async def open(cls, url: str, hs: ClientHandshake) -> Raw:
        raw = cls(await connect(url, compression=None, max_size=None), hs)
        await raw.ws.send(hs.hello_frame())
        frame = await asyncio.wait_for(raw.ws.recv(), 5)
        assert isinstance(frame, bytes)
        raw.welcome, raw.pipeline = hs.finish(frame)
        return raw

    async def call(self, sys: str, *args: Any) -> Any:
        assert self.pipeline is not None
        self._ids += 1
        msg = encoder.encode(Call(self._ids, sys, list(args)))
        await self.ws.send(self.pipeline.encode(msg))
        frame = await asyncio.wait_for(self.ws.recv(), 5)
        assert isinstance(frame, bytes)
        return server_msg_decoder.decode(self.pipeline.decode(frame))

    async def whoami(self) -> Any:
        reply = await self.call("whoami")
        return getattr(reply, "data", getattr(reply, "code", None))


async def logged_in(url: str, user: int = 4, encrypt: bool = True) -> Raw:
    a = await Raw.open(url, ClientHandshake(encrypt=encrypt))
    await a.call("login", user)
    assert await a.whoami() == [user, "", {"n": 1}]
    return a


async def close_of(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code, ws.close_reason


@pytest.mark.parametrize("encrypt", [True, False])
async def test_session_id_without_the_secret_gets_no_login(
    start_gateway: Any, encrypt: bool
) -> None:
    url = url_of(await start_gateway())
    a = await logged_in(url, encrypt=encrypt)
    assert a.welcome is not None
    sid = a.welcome.token
    bare = ClientHandshake(encrypt=encrypt)
    bare.hello.token = sid  # the id alone, no proof
    wrong = ClientHandshake(encrypt=encrypt, token=sid, secret=b"x" * 32)
    for hs in (bare, wrong):
        b = await Raw.open(url, hs)
        assert b.welcome is not None and b.welcome.token != sid
        assert await b.whoami() == "permission_denied"
        await b.ws.close()
    assert await a.whoami() == [4, "", {"n": 1}]  # the owner is untouched
    await a.ws.close()


async def test_replayed_resume_hello_is_refused(start_gateway: Any) -> None:
    gw1, gw2 = await start_gateway(), await start_gateway()
    a = await logged_in(url_of(gw1))
    assert a.welcome is not None
    resume = ClientHandshake(token=a.welcome.token, secret=a.hs.secret)
    b = await Raw.open(url_of(gw1), resume)
    assert b.welcome is not None and b.welcome.token == a.welcome.token
    for gw in (gw1, gw2):  # the same gateway and one without --auth-key
        ws = await connect(url_of(gw), compression=None)
        await ws.send(resume.hello_frame())
        assert await close_of(ws) == (4001, "replayed hello")
    assert await b.whoami() == [4, "", {"n": 1}]
    await b.ws.close()


@pytest.mark.parametrize("same_gateway", [True, False])
async def test_resume_closes_the_previous_connection(
    start_gateway: Any, same_gateway: bool
) -> None:
    gw1 = await start_gateway()
    gw2 = gw1 if same_gateway else await start_gateway()
    a = await logged_in(url_of(gw1))
    assert a.welcome is not None
    resume = ClientHandshake(token=a.welcome.token, secret=a.hs.secret)
    b = await Raw.open(url_of(gw2), resume)
    assert b.welcome is not None and b.welcome.token == a.welcome.token
    assert b.hs.secret == a.hs.secret and not b.welcome.secret
    assert await close_of(a.ws) == (4003, "resumed elsewhere")
    assert await b.whoami() == [4, "", {"n": 1}]
    await b.ws.close()
