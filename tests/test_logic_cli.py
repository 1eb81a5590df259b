"""hetu-logic's command line: clear one-paragraph errors with exit code 2, SIGTERM
exits 0 after in-flight calls, a changed schema is refused."""

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import redis.asyncio as aioredis

from hetu.redis_server import free_port
from hetu.testing import FakeGateway, WorkerProcess

CHAT = str(Path(__file__).parents[1] / "examples" / "chat.py")


def run_cli(*args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hetu_logic", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_help_names_every_option_and_its_env_var() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ["--cluster", "--redis", "--instance", "--namespace", "--workers",
                   "--log-level", "--idle-ms", "--drain", "--version"]:  # fmt: skip
        assert option in result.stdout
    assert "HETU_REDIS" in result.stdout
    assert run_cli("--version").stdout.startswith("hetu-logic ")


def test_missing_app_file(redis_url: str) -> None:
    assert_clean_error(
        run_cli("no_such_app.py", "--redis", redis_url), "does not exist"
    )


def test_app_that_fails_to_import(tmp_path: Path, redis_url: str) -> None:
    app = tmp_path / "bad_app.py"
    app.write_text("import hetu\nraise ValueError('boom in app')\n")
    assert_clean_error(run_cli(str(app), "--redis", redis_url), "boom in app")


def test_unreachable_redis() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert_clean_error(run_cli(CHAT, "--redis", url), "cannot reach Redis", url)


def test_bad_cluster_and_namespace(redis_url: str) -> None:
    assert_clean_error(
        run_cli(CHAT, "--redis", redis_url, "--cluster", "x"), "--cluster"
    )
    assert_clean_error(
        run_cli(CHAT, "--redis", redis_url, "--cluster", "12345"), "no cluster 12345"
    )
    assert_clean_error(
        run_cli(CHAT, "--redis", redis_url, "--namespace", "Nope"), "'Nope'"
    )


SLOW_APP = """
import asyncio
import numpy as np
import hetu

@hetu.define_component(namespace="Slow", permission=hetu.Permission.EVERYBODY)
class Tally(hetu.BaseComponent):
    key: np.int64 = hetu.property_field(0, unique=True)
    n: {n_type} = hetu.property_field(0)

@hetu.define_system(namespace="Slow", components=(Tally,),
                    permission=hetu.Permission.EVERYBODY)
async def slow(ctx, key, seconds):
    await asyncio.sleep(seconds)
    async with ctx.repo[Tally].upsert(key=key) as row:
        row.n += 1
"""


async def test_sigterm_finishes_in_flight_calls_and_exits_0(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    app = tmp_path / "slow_app.py"
    app.write_text(SLOW_APP.format(n_type="np.int64"))
    worker = WorkerProcess(str(app), redis_url).start()
    try:
        worker.wait_ready()
        async with FakeGateway(redis_client) as gw:
            msgs = [gw.message("slow", i, 1.0, conn=i) for i in range(10)]
            await gw.send(*msgs)
            # wait until the worker has taken all of them from the stream
            stream = gw.stream_of("slow")
            while True:
                pending = await redis_client.xpending(stream, "logic")
                if pending["pending"] == 10:
                    break
            worker.signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait, 10) == 0
            async with asyncio.timeout(5):
                while len(gw.replies) < len(msgs):
                    await asyncio.sleep(0.01)
            assert sorted(gw.replies) == sorted(m.rid for m in msgs)
            assert all(r[0].ok for r in gw.replies.values())
        assert (await redis_client.xpending(stream, "logic"))["pending"] == 0
        assert await redis_client.keys("hetu:default:sf:*") == []  # id released
    finally:
        worker.stop()


def test_changed_field_type_is_refused(tmp_path: Path, redis_url: str) -> None:
    app = tmp_path / "slow_app.py"
    app.write_text(SLOW_APP.format(n_type="np.int64"))
    first = run_cli(str(app), "--redis", redis_url, "--drain")
    assert first.returncode == 0, first.stderr
    app.write_text(SLOW_APP.format(n_type="np.float32"))
    result = run_cli(str(app), "--redis", redis_url, "--drain")
    assert_clean_error(result, "component Tally", f"hetu-logic migrate {app}")
    assert textwrap.dedent(result.stderr).count("\n") <= 2  # one paragraph


async def test_workers_option_runs_processes_and_stops_them(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    parent = WorkerProcess(CHAT, redis_url, "--workers", "2").start()
    try:
        async with asyncio.timeout(30):
            while parent.output.count("serving namespace") < 2:
                await asyncio.sleep(0.05)
        async with FakeGateway(redis_client) as gw:
            assert await gw.call("hello", "two") == "hello two"
        parent.signal(signal.SIGTERM)
        assert await asyncio.to_thread(parent.wait, 15) == 0
        assert parent.output.count("stopped") == 2
    finally:
        parent.stop()
