"""The gateway's own frame parser: split, batched, fragmented and control frames."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from hetu.pipeline.frames import client_frame
from hetu.protocol import Call, Ok, encoder

from .conftest import INSTANCE, FakeLogic, url_of
from .test_bad_input import raw_open, recv_msg


async def test_frames_split_batched_fragmented_and_pings(
    start_gateway: Any, fake_logic: FakeLogic
) -> None:
    gw = await start_gateway()
    ws, pipe = await raw_open(url_of(gw))
    try:
        transport: Any = ws.transport

        def frame(req_id: int) -> bytes:
            payload = pipe.encode(encoder.encode(Call(req_id, "echo", [req_id])))
            return client_frame(payload)

        # One frame written a byte at a time, then three in one write.
        for byte in frame(1):
            transport.write(bytes([byte]))
            await asyncio.sleep(0)
        transport.write(frame(2) + frame(3) + frame(4))
        got = [await recv_msg(ws, pipe) for _ in range(4)]
        assert got == [Ok(i, [i]) for i in range(1, 5)]
        # A ping (websockets answers it) and a fragmented message (websockets
        # assembles it), then the fast path again.
        assert await asyncio.wait_for(await ws.ping(b"p"), 5) >= 0
        data = pipe.encode(encoder.encode(Call(6, "echo", [6])))
        await ws.send([data[:2], data[2:]])
        assert await recv_msg(ws, pipe) == Ok(6, [6])
        transport.write(frame(7))
        assert await recv_msg(ws, pipe) == Ok(7, [7])
        # A large frame (64-bit length) in small chunks, echoed back in one.
        blob = os.urandom(200_000)  # incompressible
        data = client_frame(pipe.encode(encoder.encode(Call(8, "echo", [blob]))))
        assert len(data) > 200_000
        for i in range(0, len(data), 1000):
            transport.write(data[i : i + 1000])
            await asyncio.sleep(0)
        assert await recv_msg(ws, pipe) == Ok(8, [blob])
        (conn,) = gw.instances[INSTANCE].connections.values()
        assert conn.ws._fast  # the gateway parses frames itself again
    finally:
        await ws.close()
