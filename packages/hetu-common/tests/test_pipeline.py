"""Pipeline layers: round trips, tampering, replay, HMAC auth, stale hellos."""

import os
import time

import msgspec
import pytest

from hetu.errors import ProtocolError
from hetu.pipeline import (
    ClientHandshake,
    ReplayGuard,
    accept_hello,
    encode_welcome,
    make_compression,
    resume_proof,
)

AUTH = b"secret-key"


def _connect(comp: str = "zstd", encrypt: bool = True, client_key: bytes = b"",
             server_key: bytes = b"", guard: ReplayGuard | None = None):  # fmt: skip
    client = ClientHandshake(comp, encrypt, client_key)
    _, welcome, server, _ = accept_hello(
        client.hello_frame(),
        auth_key=server_key,
        guard=guard or ReplayGuard(),
        max_frame_bytes=1 << 20,
        new_token="tok",
        conn=7,
    )
    _, cpipe = client.finish(encode_welcome(welcome))
    return cpipe, server, welcome


@pytest.mark.parametrize("comp", ["none", "zlib", "zstd"])
@pytest.mark.parametrize("encrypt", [True, False])
def test_round_trip_both_directions(comp: str, encrypt: bool) -> None:
    client, server, welcome = _connect(comp, encrypt)
    assert welcome.comp == comp and welcome.token == "tok" and welcome.conn == 7
    for size in (0, 10, 255, 256, 5000, 200_000):
        data = os.urandom(size // 2) + b"a" * (size - size // 2)
        assert server.decode(client.encode(data)) == data
        assert client.decode(server.encode(data)) == data
    big = b"x" * 100_000
    if comp != "none":
        assert len(client.encode(big)) < 10_000
    if encrypt:
        assert client.encode(b"same") != client.encode(b"same")


def test_tampered_frame_fails() -> None:
    client, server, _ = _connect()
    frame = bytearray(client.encode(b"hello world"))
    frame[3] ^= 1
    with pytest.raises(ProtocolError, match="authentication"):
        server.decode(bytes(frame))


def test_replayed_and_reordered_frames_fail() -> None:
    client, server, _ = _connect()
    f1, f2 = client.encode(b"one"), client.encode(b"two")
    assert server.decode(f1) == b"one"
    with pytest.raises(ProtocolError):
        server.decode(f1)  # replay
    client2, server2, _ = _connect()
    g1, g2 = client2.encode(b"one"), client2.encode(b"two")
    with pytest.raises(ProtocolError):
        server2.decode(g2)  # reordered
    assert server.decode(f2) == b"two"
    del g1


def test_wrong_direction_key_fails() -> None:
    client, _, _ = _connect()
    with pytest.raises(ProtocolError):
        client.decode(client.encode(b"loop"))


def test_hmac_auth_accepts_right_key_and_refuses_others() -> None:
    client, server, _ = _connect(client_key=AUTH, server_key=AUTH)
    assert server.decode(client.encode(b"x")) == b"x"
    with pytest.raises(ProtocolError, match="auth failed"):
        _connect(client_key=b"wrong", server_key=AUTH)
    with pytest.raises(ProtocolError, match="auth failed"):
        _connect(client_key=b"", server_key=AUTH)


def test_auth_key_is_mixed_into_the_session_keys() -> None:
    client = ClientHandshake("none", True, b"")
    # A server that skips the MAC check but has a key derives different keys.
    _, welcome, server, _ = accept_hello(
        client.hello_frame(), auth_key=b"", guard=ReplayGuard(),
        max_frame_bytes=1024, new_token="t", conn=1,
    )  # fmt: skip
    client2 = ClientHandshake("none", True, AUTH)
    _, _, server2, _ = accept_hello(
        client2.hello_frame(), auth_key=AUTH, guard=ReplayGuard(),
        max_frame_bytes=1024, new_token="t", conn=1,
    )  # fmt: skip
    _, cp = client.finish(encode_welcome(welcome))
    assert server.decode(cp.encode(b"a")) == b"a"
    with pytest.raises(ProtocolError):
        server2.decode(cp.encode(b"a"))


def test_replayed_hello_is_refused() -> None:
    guard = ReplayGuard()
    client = ClientHandshake("zstd", True, AUTH)
    frame = client.hello_frame()
    kw = dict(auth_key=AUTH, guard=guard, max_frame_bytes=1024, new_token="t", conn=1)
    accept_hello(frame, **kw)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="replayed hello"):
        accept_hello(frame, **kw)  # type: ignore[arg-type]


def test_stale_hello_is_refused() -> None:
    client = ClientHandshake("zstd", True, AUTH)
    client.hello.ts = int((time.time() - 31) * 1000)
    from hetu.pipeline import hello_mac

    client.hello.mac = hello_mac(AUTH, client.hello)
    with pytest.raises(ProtocolError, match="stale hello"):
        accept_hello(
            client.hello_frame(), auth_key=AUTH, guard=ReplayGuard(),
            max_frame_bytes=1024, new_token="t", conn=1,
        )  # fmt: skip


@pytest.mark.parametrize("frame", [b"", b"\xc1", msgspec.msgpack.encode([1, 2]),
                                   msgspec.msgpack.encode({"v": 1, "nonce": b"x"}),
                                   msgspec.msgpack.encode({"v": 9})])  # fmt: skip
def test_malformed_hello_is_refused(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        accept_hello(
            frame, auth_key=b"", guard=ReplayGuard(),
            max_frame_bytes=1024, new_token="t", conn=1,
        )  # fmt: skip


@pytest.mark.parametrize("name", ["zlib", "zstd"])
def test_decompression_bomb_and_garbage_are_refused(name: str) -> None:
    small = make_compression(name, 1000)
    big = make_compression(name, 10**7)
    bomb = big.compress(b"a" * 1_000_000)
    with pytest.raises(ProtocolError):
        small.decompress(bomb)
    for bad in (b"\x02abc", b"\x01garbage", b"\x01"):
        with pytest.raises(ProtocolError):
            small.decompress(bad)


@pytest.mark.parametrize("encrypt", [True, False])
def test_session_secret_is_shared_and_sent_only_without_encryption(
    encrypt: bool,
) -> None:
    client = ClientHandshake("none", encrypt)
    hello, welcome, _, secret = accept_hello(
        client.hello_frame(), auth_key=b"", guard=ReplayGuard(),
        max_frame_bytes=1024, new_token="t", conn=1,
    )  # fmt: skip
    client.finish(encode_welcome(welcome))
    assert client.secret == secret and len(secret) == 32
    assert (secret in encode_welcome(welcome)) is not encrypt
    assert not hello.proof


def test_resume_proof_binds_the_secret_to_this_hello() -> None:
    resume = ClientHandshake("none", True, b"", "sid", b"s" * 32)
    hello = resume.hello
    assert hello.token == "sid" and hello.proof == resume_proof(b"s" * 32, hello)
    assert resume_proof(b"x" * 32, hello) != hello.proof
    other = ClientHandshake("none", True, b"", "sid", b"s" * 32).hello
    assert other.proof != hello.proof  # fresh nonce and key: a new proof
    # Without a secret the id is not even sent.
    assert ClientHandshake("none", True, b"", "sid").hello.token == ""
