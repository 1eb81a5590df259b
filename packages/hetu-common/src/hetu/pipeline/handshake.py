"""The opening handshake: negotiate compression and encryption, check the auth key.

握手：协商压缩与加密，校验认证密钥。

The first WebSocket frame in each direction is a plain msgpack map (see
docs/protocol.md): the client's :class:`Hello`, the server's :class:`Welcome`.
Every later frame goes through the negotiated :class:`Pipeline`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

import msgspec

from hetu.errors import ProtocolError
from hetu.pipeline.compression import COMPRESSIONS, make_compression
from hetu.pipeline.crypto import KeyPair, derive_keys
from hetu.pipeline.pipeline import Pipeline

PROTOCOL_VERSION = 1
MAX_CLOCK_SKEW_S = 30.0
NONCE_BYTES = 16
MAC_LABEL = b"HeTu hello v1\x00"


class Hello(msgspec.Struct, forbid_unknown_fields=False):
    """Client's first frame. 客户端的第一帧。"""

    v: int = PROTOCOL_VERSION
    comp: list[str] = msgspec.field(default_factory=lambda: list(COMPRESSIONS))
    pub: bytes = b""
    ts: int = 0
    nonce: bytes = b""
    token: str = ""
    mac: bytes = b""


class Welcome(msgspec.Struct):
    """Server's answer to a :class:`Hello`. 服务器对 Hello 的回应。"""

    v: int
    comp: str
    pub: bytes
    token: str
    conn: int
    max_frame: int


_hello_decoder = msgspec.msgpack.Decoder(Hello)
_welcome_decoder = msgspec.msgpack.Decoder(Welcome)
_encoder = msgspec.msgpack.Encoder()


def hello_mac(auth_key: bytes, hello: Hello) -> bytes:
    """HMAC-SHA256 over the hello transcript (see docs/protocol.md)."""
    transcript = b"".join((
        MAC_LABEL,
        hello.ts.to_bytes(8, "big", signed=True),
        hello.nonce,
        hello.pub,
        ",".join(hello.comp).encode(),
        b"\x00",
        hello.token.encode(),
    ))  # fmt: skip
    return hmac.new(auth_key, transcript, hashlib.sha256).digest()


class ReplayGuard:
    """Remembers hello nonces for twice the allowed clock skew. 记住近期握手随机数。"""

    def __init__(self, max_skew_s: float = MAX_CLOCK_SKEW_S) -> None:
        self.max_skew_s = max_skew_s
        self._seen: dict[bytes, float] = {}

    def check(self, hello: Hello, now: float) -> None:
        """Raises: ProtocolError: the hello is stale or its nonce was seen."""
        if abs(now - hello.ts / 1000.0) > self.max_skew_s:
            raise ProtocolError("stale hello")
        if len(self._seen) > 1024:
            self._seen = {n: t for n, t in self._seen.items() if t > now}
        if self._seen.get(hello.nonce, 0.0) > now:
            raise ProtocolError("replayed hello")
        self._seen[hello.nonce] = now + 2 * self.max_skew_s


def accept_hello(
    frame: bytes,
    *,
    auth_key: bytes,
    guard: ReplayGuard,
    max_frame_bytes: int,
    new_token: str,
    conn: int,
) -> tuple[Hello, Welcome, Pipeline]:
    """Server side: check a client hello and build the reply and the pipeline.

    The session token in the welcome is the client's own when it presents one (a
    reconnect), else ``new_token``.

    Raises:
        ProtocolError: malformed, unauthenticated, stale or replayed hello; the
            message is the close reason.
    """
    try:
        hello = _hello_decoder.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ProtocolError("bad hello") from None
    if hello.v != PROTOCOL_VERSION:
        raise ProtocolError("unsupported protocol version")
    if len(hello.nonce) != NONCE_BYTES or len(hello.token) > 64:
        raise ProtocolError("bad hello")
    if auth_key:
        expected = hello_mac(auth_key, hello)
        if not hmac.compare_digest(expected, hello.mac):
            raise ProtocolError("auth failed")
    guard.check(hello, time.time())
    comp = next((c for c in hello.comp if c in COMPRESSIONS), None)
    if comp is None:
        raise ProtocolError("no common compression")
    pub = b""
    encryption = None
    if hello.pub:
        keys = KeyPair()
        pub = keys.public
        shared = keys.shared_secret(hello.pub)
        c2s, s2c = derive_keys(shared, hello.nonce, hello.pub, pub, auth_key)
        encryption = (s2c, c2s)
    welcome = Welcome(
        v=PROTOCOL_VERSION,
        comp=comp,
        pub=pub,
        token=hello.token or new_token,
        conn=conn,
        max_frame=max_frame_bytes,
    )
    pipeline = Pipeline(make_compression(comp, max_frame_bytes * 4), encryption)
    return hello, welcome, pipeline


def encode_welcome(welcome: Welcome) -> bytes:
    return _encoder.encode(welcome)


class ClientHandshake:
    """Client side of the handshake. 握手的客户端一侧。"""

    def __init__(
        self,
        compression: str = "zstd",
        encrypt: bool = True,
        auth_key: bytes = b"",
        token: str = "",
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ProtocolError(f"unknown compression {compression!r}")
        self._keys = KeyPair() if encrypt else None
        self._auth_key = auth_key
        self.hello = Hello(
            comp=[compression],
            pub=self._keys.public if self._keys else b"",
            ts=int(time.time() * 1000),
            nonce=os.urandom(NONCE_BYTES),
            token=token,
        )
        if auth_key:
            self.hello.mac = hello_mac(auth_key, self.hello)

    def hello_frame(self) -> bytes:
        return _encoder.encode(self.hello)

    def finish(
        self, frame: bytes, max_bytes: int = 64 << 20
    ) -> tuple[Welcome, Pipeline]:
        """Read the server's welcome and build the pipeline.

        Raises:
            ProtocolError: malformed welcome or a negotiation the client did not ask.
        """
        try:
            welcome = _welcome_decoder.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ProtocolError("bad welcome") from None
        if welcome.comp not in self.hello.comp:
            raise ProtocolError("server chose a compression the client did not offer")
        encryption = None
        if self._keys is not None:
            if not welcome.pub:
                raise ProtocolError("server refused encryption")
            shared = self._keys.shared_secret(welcome.pub)
            c2s, s2c = derive_keys(
                shared, self.hello.nonce, self.hello.pub, welcome.pub, self._auth_key
            )
            encryption = (c2s, s2c)
        return welcome, Pipeline(make_compression(welcome.comp, max_bytes), encryption)
