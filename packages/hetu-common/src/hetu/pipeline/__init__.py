"""The message pipeline between clients and gateways: one module per layer.

客户端与网关之间的消息管道：每层一个模块。
"""

from hetu.pipeline.compression import COMPRESSIONS, CompressionName, make_compression
from hetu.pipeline.crypto import (
    Encryption,
    KeyPair,
    derive_keys,
    derive_session_secret,
)
from hetu.pipeline.handshake import (
    MAX_CLOCK_SKEW_S,
    PROTOCOL_VERSION,
    ClientHandshake,
    Hello,
    ReplayGuard,
    Welcome,
    accept_hello,
    encode_welcome,
    hello_mac,
    resume_proof,
)
from hetu.pipeline.pipeline import Pipeline

__all__ = [
    "COMPRESSIONS",
    "MAX_CLOCK_SKEW_S",
    "PROTOCOL_VERSION",
    "ClientHandshake",
    "CompressionName",
    "Encryption",
    "Hello",
    "KeyPair",
    "Pipeline",
    "ReplayGuard",
    "Welcome",
    "accept_hello",
    "derive_keys",
    "derive_session_secret",
    "encode_welcome",
    "hello_mac",
    "make_compression",
    "resume_proof",
]
