"""Publish the app's registry for gateways, refusing incompatible stored data.

为网关发布应用的注册表；存储的数据与之不兼容时拒绝启动。
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from msgspec.structs import replace
from redis.exceptions import WatchError

from hetu.errors import ConfigError
from hetu.keys import Keys
from hetu.registry import same_content, schema_problems
from hetu.wire import Registry, registry_decoder, registry_encoder

logger = logging.getLogger(__name__)


async def stored_registry(redis: aioredis.Redis, keys: Keys) -> Registry | None:
    """The registry currently published for the instance, or None."""
    raw = await redis.get(keys.registry())
    return None if raw is None else registry_decoder.decode(raw)  # pyright: ignore[reportArgumentType]


def check_schema(stored: Registry | None, new: Registry, app: str) -> None:
    """Refuse ``new`` when stored data was written under another schema or cluster
    layout. Reused by ``hetu-logic migrate`` to know what to convert.

    Raises:
        ConfigError: naming each component and the command to run.
    """
    if stored is None:
        return
    problems = schema_problems(stored, new)
    if problems:
        raise ConfigError(
            "stored data does not match the app: "
            + "; ".join(problems)
            + f". Run `hetu-logic migrate {app}` to convert it, then start again"
        )


async def publish_registry(
    redis: aioredis.Redis, keys: Keys, registry: Registry, app: str = "app.py"
) -> int:
    """Publish ``registry`` unless the stored one has the same content; return the
    version in force. A new version is ``stored + 1`` and is announced on
    ``registry:changed``.

    Raises:
        ConfigError: see :func:`check_schema`.
    """
    key = keys.registry()
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key)
                raw = await pipe.get(key)
                stored = None if raw is None else registry_decoder.decode(raw)  # pyright: ignore[reportArgumentType]
                check_schema(stored, registry, app)
                if stored is not None and same_content(stored, registry):
                    await pipe.unwatch()
                    return stored.version
                version = 1 if stored is None else stored.version + 1
                pipe.multi()
                pipe.set(
                    key, registry_encoder.encode(replace(registry, version=version))
                )
                pipe.publish(keys.registry_changed(), str(version))
                await pipe.execute()
                logger.info("published registry version %d", version)
                return version
            except WatchError:
                continue
