"""Encryption layer: X25519 key exchange, HKDF-SHA256 keys, ChaCha20-Poly1305.

加密层：X25519 密钥交换、HKDF-SHA256 派生密钥、ChaCha20-Poly1305。

Each direction has its own 32-byte key and a 64-bit message counter starting at 0.
The 96-bit nonce is 4 zero bytes followed by the counter, big-endian. A frame that
is replayed, dropped or reordered fails authentication; the connection must close.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hetu.errors import ProtocolError

KEY_INFO = b"HeTu v1 keys"
SESSION_INFO = b"HeTu v1 session"
PUBLIC_KEY_BYTES = 32


class KeyPair:
    """An ephemeral X25519 key pair. 临时 X25519 密钥对。"""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public = self._private.public_key().public_bytes_raw()

    def shared_secret(self, peer_public: bytes) -> bytes:
        """Raises: ProtocolError: ``peer_public`` is not a valid X25519 key."""
        if len(peer_public) != PUBLIC_KEY_BYTES:
            raise ProtocolError("X25519 public key must be 32 bytes")
        try:
            peer = X25519PublicKey.from_public_bytes(peer_public)
            return self._private.exchange(peer)
        except ValueError as exc:
            raise ProtocolError(f"bad X25519 public key: {exc}") from None


def derive_keys(
    shared: bytes,
    client_nonce: bytes,
    client_public: bytes,
    server_public: bytes,
    auth_key: bytes = b"",
) -> tuple[bytes, bytes]:
    """Return ``(client_to_server_key, server_to_client_key)``.

    HKDF-SHA256, salt = client nonce, info = ``KEY_INFO + client_public +
    server_public``, input key material = shared secret + auth key (empty without
    ``--auth-key``, so a man in the middle without the key cannot read frames), 64
    bytes of output split in two.
    """
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=client_nonce,
        info=KEY_INFO + client_public + server_public,
    ).derive(shared + auth_key)
    return okm[:32], okm[32:]


def derive_session_secret(
    shared: bytes,
    client_nonce: bytes,
    client_public: bytes,
    server_public: bytes,
    auth_key: bytes = b"",
) -> bytes:
    """A new session's 32-byte secret, known to both sides and never sent.

    As :func:`derive_keys` with info ``SESSION_INFO + client_public +
    server_public`` and 32 bytes of output.
    """
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=client_nonce,
        info=SESSION_INFO + client_public + server_public,
    ).derive(shared + auth_key)


class Encryption:
    """ChaCha20-Poly1305 with one counter per direction. 按方向计数的 AEAD。

    Raises:
        ProtocolError: from :meth:`decrypt` when a frame fails authentication.
    """

    name = "chacha20"

    def __init__(self, send_key: bytes, recv_key: bytes) -> None:
        self._send = ChaCha20Poly1305(send_key)
        self._recv = ChaCha20Poly1305(recv_key)
        self._send_n = 0
        self._recv_n = 0

    def encrypt(self, data: bytes) -> bytes:
        nonce = self._send_n.to_bytes(12, "big")
        self._send_n += 1
        return self._send.encrypt(nonce, data, None)

    def decrypt(self, data: bytes) -> bytes:
        nonce = self._recv_n.to_bytes(12, "big")
        try:
            out = self._recv.decrypt(nonce, data, None)
        except InvalidTag:
            raise ProtocolError(
                "frame failed authentication (tampered, replayed or reordered)"
            ) from None
        self._recv_n += 1
        return out
