"""A reconnecting client moves to the next gateway, keeps its login and retries
an unanswered call with the same request id."""

from __future__ import annotations

import asyncio
from typing import Any

import hetu.client

from .conftest import FakeLogic, url_of


async def test_reconnect_restores_login_and_retries_same_rid(
    start_gateway: Any, fake_logic: FakeLogic
) -> None:
    gw1, gw2 = await start_gateway(), await start_gateway()
    async with hetu.client.connect([url_of(gw1), url_of(gw2)], reconnect=True) as c:
        await c.call("login", 4)
        token = c.token
        call = asyncio.create_task(c.call("once", timeout_s=10))
        await fake_logic.unanswered.wait()
        gw1.stop()
        assert await call == "again"
        assert c.token == token
        assert await c.call("whoami") == [4, "", {"n": 1}]
    rids = [m.rid for m in fake_logic.calls if m.sys == "once"]
    assert len(rids) == 2 and rids[0] == rids[1]
    assert {m.gw for m in fake_logic.calls if m.sys == "once"} == {gw1.gw_id, gw2.gw_id}
