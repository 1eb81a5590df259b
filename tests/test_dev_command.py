"""`hetu dev app.py` runs a whole engine a client can use, and stops cleanly."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import hetu.client
from hetu.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
HETU = str(Path(sys.executable).parent / "hetu")


def wait_ready(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "ready" in line:
            return line
        assert proc.poll() is None, f"hetu dev exited with {proc.returncode}"
    raise AssertionError("hetu dev did not report ready")


async def test_dev_serves_the_example_app_without_a_redis_url() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [HETU, "dev", str(ROOT / "examples" / "chat.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = wait_ready(proc)
        assert f"ws://127.0.0.1:{port}/hetu/default" in line
        async with hetu.client.connect(f"ws://127.0.0.1:{port}/hetu/default") as c:
            assert await c.call("add", 3, 2) == 2
            assert await c.call("add", 3, 5) == 7
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_dev_missing_app_file_exits_2() -> None:
    result = subprocess.run(
        [HETU, "dev", "no/such/app.py"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "no/such/app.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_app_that_fails_to_import_never_reports_ready(tmp_path: Path) -> None:
    app = tmp_path / "broken.py"
    app.write_text("import no_such_module_anywhere\n")
    result = subprocess.run(
        [HETU, "dev", str(app), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "ready" not in result.stdout
    assert "hetu-logic exited" in result.stderr
