"""The opening handshake: negotiate compression and encryption, check the auth key.

握手：协商压缩与加密，校验认证密钥。

The first WebSocket frame in each direction is a plain msgpack map (see
docs/protocol.md): the client's :class:`Hello`, the server's :class:`Welcome`.
Every later frame goes through the negotiated :class:`Pipeline`. A session is a
public id (``token``) and a secret that never travels in clear with encryption on
(both sides derive it); a resuming hello proves the secret with ``proof``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

import msgspec

from hetu.errors import ProtocolError
from hetu.pipeline.compression import COMPRESSIONS, make_compression
from hetu.pipeline.crypto import KeyPair, derive_keys, derive_session_secret
from hetu.pipeline.pipeline import Pipeline

PROTOCOL_VERSION = 1
MAX_CLOCK_SKEW_S = 30.0
NONCE_BYTES = 16
MAC_LABEL = b"HeTu hello v1\x00"
PROOF_LABEL = b"HeTu resume v1\x00"
SECRET_BYTES = 32


class Hello(msgspec.Struct, forbid_unknown_fields=False):
    """Client's first frame. 客户端的第一帧。"""

    v: int = PROTOCOL_VERSION
    comp: list[str] = msgspec.field(default_factory=lambda: list(COMPRESSIONS))
    pub: bytes = b""
    ts: int = 0
    nonce: bytes = b""
    token: str = ""
    mac: bytes = b""
    proof: bytes = b""


class Welcome(msgspec.Struct):
    """Server's answer to a :class:`Hello`. 服务器对 Hello 的回应。"""

    v: int
    comp: str
    pub: bytes
    token: str
    conn: int
    max_frame: int
    secret: bytes = b""


_hello_decoder = msgspec.msgpack.Decoder(Hello)
_welcome_decoder = msgspec.msgpack.Decoder(Welcome)
_encoder = msgspec.msgpack.Encoder()


def hello_mac(auth_key: bytes, hello: Hello, label: bytes = MAC_LABEL) -> bytes:
    """HMAC-SHA256 over the hello transcript (see docs/protocol.md)."""
    transcript = b"".join((
        label,
        hello.ts.to_bytes(8, "big", signed=True),
        hello.nonce,
        hello.pub,
        ",".join(hello.comp).encode(),
        b"\x00",
        hello.token.encode(),
    ))  # fmt: skip
    return hmac.new(auth_key, transcript, hashlib.sha256).digest()


def resume_proof(secret: bytes, hello: Hello) -> bytes:
    """HMAC-SHA256 keyed by the session secret over the hello transcript: proves
    the secret without sending it, and only for this hello's nonce and key."""
    return hello_mac(secret, hello, PROOF_LABEL)


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
) -> tuple[Hello, Welcome, Pipeline, bytes]:
    """Server side: check a client hello and build the reply, the pipeline and a
    new session's secret.

    The welcome names a new session ``new_token``; the gateway replaces it by the
    hello's ``token`` once the hello's ``proof`` checks out (a resume). The secret
    is derived from the key exchange with encryption (the welcome's ``secret`` is
    empty), else random and sent in the welcome.

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
    if (
        len(hello.nonce) != NONCE_BYTES
        or len(hello.token) > 64
        or len(hello.proof) not in (0, SECRET_BYTES)
    ):
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
        secret = derive_session_secret(shared, hello.nonce, hello.pub, pub, auth_key)
    else:
        secret = os.urandom(SECRET_BYTES)
    welcome = Welcome(
        v=PROTOCOL_VERSION,
        comp=comp,
        pub=pub,
        token=new_token,
        conn=conn,
        max_frame=max_frame_bytes,
        secret=b"" if encryption else secret,
    )
    pipeline = Pipeline(make_compression(comp, max_frame_bytes * 4), encryption)
    return hello, welcome, pipeline, secret


def encode_welcome(welcome: Welcome) -> bytes:
    return _encoder.encode(welcome)


class ClientHandshake:
    """Client side of the handshake; ``token`` and ``secret`` resume a session.

    After :meth:`finish`, :attr:`secret` is the session's secret.

    握手的客户端一侧；``token`` 与 ``secret`` 用于恢复会话。
    """

    def __init__(
        self,
        compression: str = "zstd",
        encrypt: bool = True,
        auth_key: bytes = b"",
        token: str = "",
        secret: bytes = b"",
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ProtocolError(f"unknown compression {compression!r}")
        self._keys = KeyPair() if encrypt else None
        self._auth_key = auth_key
        self._secret = secret
        self.secret = b""
        self.hello = Hello(
            comp=[compression],
            pub=self._keys.public if self._keys else b"",
            ts=int(time.time() * 1000),
            nonce=os.urandom(NONCE_BYTES),
            token=token if secret else "",
        )
        if secret and token:
            self.hello.proof = resume_proof(secret, self.hello)
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
        self.secret = welcome.secret
        if self._keys is not None:
            if not welcome.pub:
                raise ProtocolError("server refused encryption")
            shared = self._keys.shared_secret(welcome.pub)
            args = (shared, self.hello.nonce, self.hello.pub, welcome.pub)
            c2s, s2c = derive_keys(*args, self._auth_key)
            encryption = (c2s, s2c)
            self.secret = derive_session_secret(*args, self._auth_key)
        if self.hello.proof and welcome.token == self.hello.token:
            self.secret = self._secret  # resumed: the session keeps its secret
        elif len(self.secret) != SECRET_BYTES:
            raise ProtocolError("welcome without a session secret")
        return welcome, Pipeline(make_compression(welcome.comp, max_bytes), encryption)
