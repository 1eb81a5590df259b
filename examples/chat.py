"""A small chat app plus a counter: the example the tests, benches and guides use.

一个小型聊天应用加计数器：测试、基准与指南使用的示例。

Run it: ``hetu-logic examples/chat.py --redis redis://127.0.0.1:6379/0``.
"""

import numpy as np

import hetu


@hetu.define_component(namespace="Chat", permission=hetu.Permission.EVERYBODY)
class ChatMessage(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    text: str = hetu.property_field("", dtype="U256")


@hetu.define_component(namespace="Chat", permission=hetu.Permission.EVERYBODY)
class Counter(hetu.BaseComponent):
    key: np.int64 = hetu.property_field(0, unique=True)
    value: np.int64 = hetu.property_field(0)


def not_empty(ctx: hetu.SystemContext, text: str) -> None:
    if not text.strip():
        raise hetu.ClientReject("empty_text", f"user {ctx.caller} sent blank text")


@hetu.define_system(
    namespace="Chat", components=(ChatMessage,), permission=hetu.Permission.USER
)
@hetu.rate_limit(20, 1.0)
@hetu.guard(not_empty)
async def user_chat(ctx: hetu.SystemContext, text: str):
    row = ChatMessage.new_row()
    row.owner = ctx.caller
    row.text = text
    await ctx.repo[ChatMessage].insert(row)


@hetu.define_system(namespace="Chat", permission=hetu.Permission.EVERYBODY)
async def login(ctx: hetu.SystemContext, user_id: int, kick: bool = True):
    ok, reason = await hetu.elevate(ctx, user_id, kick_logged_in=kick)
    ctx.user_data["logins"] = ctx.user_data.get("logins", 0) + 1
    return hetu.ResponseToClient({"ok": ok, "reason": reason})


@hetu.define_system(namespace="Chat", components=(ChatMessage,))
async def on_disconnect(ctx: hetu.SystemContext):
    if ctx.caller:
        row = ChatMessage.new_row()
        row.owner = ctx.caller
        row.text = "left"
        await ctx.repo[ChatMessage].insert(row)


@hetu.define_system(
    namespace="Chat", components=(Counter,), permission=hetu.Permission.EVERYBODY
)
async def add(ctx: hetu.SystemContext, key: int, n: int = 1):
    """Get the counter row and update it (inserted on first use)."""
    repo = ctx.repo[Counter]
    row = await repo.get(key=key)
    if row is None:
        row = Counter.new_row()
        row.key = key
        row.value = n
        await repo.insert(row)
    else:
        row.value += n
        await repo.update(row)
    return hetu.ResponseToClient(row.value)


@hetu.define_system(
    namespace="Chat", components=(Counter,), permission=hetu.Permission.EVERYBODY
)
async def get(ctx: hetu.SystemContext, key: int):
    """The counter row as a dict, or None."""
    return hetu.ResponseToClient(await ctx.repo[Counter].get(key=key))


@hetu.define_system(
    namespace="Chat", components=(Counter,), permission=hetu.Permission.EVERYBODY
)
async def top(ctx: hetu.SystemContext, limit: int = 10):
    """The first counters by key (a record array becomes a list of dicts)."""
    return hetu.ResponseToClient(
        await ctx.repo[Counter].range("key", 0, 2**62, limit=limit)
    )


@hetu.define_endpoint(namespace="Chat", permission=hetu.Permission.EVERYBODY)
async def hello(ctx: hetu.EndpointContext, name: str = "world"):
    return hetu.ResponseToClient(f"hello {name}")


@hetu.define_endpoint(namespace="Chat", permission=hetu.Permission.EVERYBODY)
async def add_twice(ctx: hetu.EndpointContext, key: int):
    """Two Systems from an endpoint: each its own transaction."""
    await ctx.systems.call("add", key, 1)
    return await ctx.systems.call("add", key, 1)
