"""A minimal HeTu client written only from docs/protocol.md (clean room).

It proves the document is enough to speak the protocol: it imports nothing from
``hetu`` and uses only websockets, msgspec, zstandard, zlib and cryptography.

只依据 docs/protocol.md 写成的最小 HeTu 客户端（净室实现），用于验证协议文档。
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgspec
import websockets
import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

COMPRESS_MIN = 256  # §3: senders compress only messages of 256 bytes or more
MAX_RECEIVED = 64 << 20  # §3: the gateway's messages are not bounded by max_frame
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class HandshakeRefused(Exception):
    """The gateway closed the socket instead of sending a welcome (§2, §7)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class CallFailed(Exception):
    """An ``["err", id, code, message]`` reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def hello_mac(
    key: str | bytes,
    ts: int,
    nonce: bytes,
    pub: bytes,
    comp: list[str],
    token: str,
    label: bytes = b"HeTu hello v1\x00",
) -> bytes:
    """§2: HMAC-SHA256 over the hello's fields, keyed by the auth key (§8: by the
    session secret, with the resume label, for ``proof``)."""
    key = key.encode() if isinstance(key, str) else key
    msg = (
        label
        + struct.pack(">q", ts)
        + nonce
        + pub
        + ",".join(comp).encode()
        + b"\x00"
        + token.encode()
    )
    return hmac.new(key, msg, hashlib.sha256).digest()


def resume_proof(
    secret: bytes, ts: int, nonce: bytes, pub: bytes, comp: list[str], token: str
) -> bytes:
    """§8: the hello's ``proof`` of the session secret."""
    return hello_mac(secret, ts, nonce, pub, comp, token, b"HeTu resume v1\x00")


def derive_keys(
    shared: bytes, auth_key: str, nonce: bytes, client_pub: bytes, server_pub: bytes
) -> tuple[bytes, bytes]:
    """§2: (client_to_server_key, server_to_client_key)."""
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=nonce,
        info=b"HeTu v1 keys" + client_pub + server_pub,
    ).derive(shared + auth_key.encode())
    return okm[:32], okm[32:]


def derive_session_secret(
    shared: bytes, auth_key: str, nonce: bytes, client_pub: bytes, server_pub: bytes
) -> bytes:
    """§2/§8: a new session's secret on an encrypted connection."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=nonce,
        info=b"HeTu v1 session" + client_pub + server_pub,
    ).derive(shared + auth_key.encode())


@dataclass
class Codec:
    """§3: frame = encrypt(compress(msgpack(message))), one instance per connection."""

    comp: str
    send_key: bytes | None = None
    recv_key: bytes | None = None
    force_compress: bool = False  # compress even small messages (flag 0x01)
    sent: int = 0
    received: int = 0
    flags: list[int] = field(default_factory=list)  # flag byte of each received frame

    def encode(self, message: list[Any]) -> bytes:
        body = _encoder.encode(message)
        if self.comp != "none":
            if len(body) >= COMPRESS_MIN or self.force_compress:
                if self.comp == "zstd":
                    packed = zstandard.ZstdCompressor(level=1).compress(body)
                else:
                    packed = zlib.compress(body)
                body = b"\x01" + packed
            else:
                body = b"\x00" + body
        if self.send_key is not None:
            nonce = bytes(4) + struct.pack(">Q", self.sent)
            body = ChaCha20Poly1305(self.send_key).encrypt(nonce, body, None)
        self.sent += 1
        return body

    def decode(self, frame: bytes) -> Any:
        if self.recv_key is not None:
            nonce = bytes(4) + struct.pack(">Q", self.received)
            frame = ChaCha20Poly1305(self.recv_key).decrypt(nonce, frame, None)
        self.received += 1
        if self.comp != "none":
            flag, frame = frame[0], frame[1:]
            self.flags.append(flag)
            if flag == 1:
                if self.comp == "zstd":
                    frame = zstandard.ZstdDecompressor().decompress(
                        frame, max_output_size=MAX_RECEIVED
                    )
                else:
                    d = zlib.decompressobj()
                    frame = d.decompress(frame, MAX_RECEIVED)
                    assert not d.unconsumed_tail, "decompressed message too large"
            elif flag != 0:
                raise ValueError(f"unknown compression flag {flag}")
        return _decoder.decode(frame)


@dataclass
class Sub:
    """One subscription: the snapshot as received, then pushes in a queue."""

    sub: int
    cid: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    fresh: bool = True
    pushes: asyncio.Queue[list[Any]] = field(default_factory=asyncio.Queue)

    async def next_push(self, timeout: float = 5.0) -> list[Any]:
        """The next ``["push", sub, cid, events]`` message."""
        return await asyncio.wait_for(self.pushes.get(), timeout)


class Client:
    """Handshake, then requests with ids and subscription pushes."""

    def __init__(
        self, ws: Any, welcome: dict[str, Any], codec: Codec, secret: bytes
    ) -> None:
        self.ws = ws
        self.welcome = welcome
        self.codec = codec
        #: §8: the session's secret; with ``welcome["token"]`` it resumes it.
        self.secret = secret
        self.next_id = 0
        self.replies: dict[int, asyncio.Future[list[Any]]] = {}
        self.subs: dict[int, Sub] = {}
        self.closed: asyncio.Future[tuple[int | None, str]] = (
            asyncio.get_running_loop().create_future()
        )
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        comp: list[str] | None = None,
        encrypt: bool = True,
        auth_key: str = "",
        token: str = "",
        secret: bytes = b"",
        ts: int | None = None,
        nonce: bytes | None = None,
        force_compress: bool = False,
        version: int = 1,
    ) -> Client:
        """Open the WebSocket and run the §2 handshake; ``token`` and ``secret``
        resume a session (§8), a ``token`` alone is sent without a proof."""
        comp = comp if comp is not None else ["zstd", "zlib", "none"]
        ws = await websockets.connect(url, compression=None, max_size=MAX_RECEIVED)
        try:
            private = X25519PrivateKey.generate() if encrypt else None
            pub = (
                private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                if private
                else b""
            )
            nonce = nonce if nonce is not None else os.urandom(16)
            ts = ts if ts is not None else int(time.time() * 1000)
            mac = hello_mac(auth_key, ts, nonce, pub, comp, token) if auth_key else b""
            proof = (
                resume_proof(secret, ts, nonce, pub, comp, token)
                if token and secret
                else b""
            )
            hello = {
                "v": version,
                "comp": comp,
                "pub": pub,
                "ts": ts,
                "nonce": nonce,
                "token": token,
                "mac": mac,
                "proof": proof,
            }
            await ws.send(_encoder.encode(hello))
            try:
                first = await ws.recv(decode=False)
            except websockets.ConnectionClosed:
                raise HandshakeRefused(ws.close_code, ws.close_reason or "") from None
            welcome = _decoder.decode(first)
            assert isinstance(welcome, dict), welcome
            codec = Codec(welcome["comp"], force_compress=force_compress)
            session_secret = welcome["secret"]
            if private is not None:
                server_pub = welcome["pub"]
                shared = private.exchange(X25519PublicKey.from_public_bytes(server_pub))
                keys = (shared, auth_key, nonce, pub, server_pub)
                codec.send_key, codec.recv_key = derive_keys(*keys)
                session_secret = derive_session_secret(*keys)
            if proof and welcome["token"] == token:
                session_secret = secret  # resumed: the secret does not change
        except BaseException:
            await ws.close()
            raise
        return cls(ws, welcome, codec, session_secret)

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                assert isinstance(frame, bytes), "the gateway sends binary only"
                msg = self.codec.decode(frame)
                if msg[0] == "push":
                    self.subs.setdefault(msg[1], Sub(msg[1])).pushes.put_nowait(msg)
                    continue
                future = self.replies.pop(msg[1], None)
                if future is not None and not future.done():
                    future.set_result(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            result = (self.ws.close_code, self.ws.close_reason or "")
            if not self.closed.done():
                self.closed.set_result(result)
            for future in self.replies.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed: {result}"))

    async def send(self, message: list[Any]) -> None:
        """Send one message as a frame (no reply expected by this method)."""
        await self.ws.send(self.codec.encode(message))

    async def request(self, tag: str, *fields: Any, timeout: float = 10) -> list[Any]:
        """Send ``[tag, id, *fields]`` with a fresh id; the reply message."""
        self.next_id += 1
        rid = self.next_id
        future = asyncio.get_running_loop().create_future()
        self.replies[rid] = future
        if tag in ("wrow", "wrange"):  # §6: the subscription id is the request id
            self.subs.setdefault(rid, Sub(rid))
        await self.send([tag, rid, *fields])
        return await asyncio.wait_for(future, timeout)

    async def call(self, sys: str, *args: Any) -> Any:
        """``["call", id, sys, args]``: the ok data, or raise CallFailed."""
        reply = await self.request("call", sys, list(args))
        return self._result(reply)

    def _result(self, reply: list[Any]) -> Any:
        if reply[0] == "err":
            raise CallFailed(reply[2], reply[3])
        assert reply[0] == "ok", reply
        return reply[2]

    def _sub(self, reply: list[Any]) -> Sub:
        if reply[0] == "err":
            self.subs.pop(reply[1], None)
            raise CallFailed(reply[2], reply[3])
        tag, rid, sub_id, cid, rows, fresh = reply
        assert tag == "sub" and sub_id == rid, reply
        sub = self.subs[sub_id]
        sub.cid, sub.rows, sub.fresh = cid, rows, fresh
        return sub

    async def watch_range(
        self,
        comp: str,
        index: str,
        left: Any,
        right: Any,
        limit: int = 10,
        desc: bool = False,
        since: str = "",
        view: list[dict[str, Any]] | None = None,
    ) -> Sub:
        reply = await self.request(
            "wrange", comp, index, left, right, limit, desc, since, view or []
        )
        return self._sub(reply)

    async def watch_row(
        self,
        comp: str,
        index: str,
        value: Any,
        since: str = "",
        view: list[dict[str, Any]] | None = None,
    ) -> Sub:
        reply = await self.request("wrow", comp, index, value, since, view or [])
        return self._sub(reply)

    async def unwatch(self, sub: Sub) -> Any:
        reply = await self.request("unwatch", sub.sub)
        self.subs.pop(sub.sub, None)
        return self._result(reply)
