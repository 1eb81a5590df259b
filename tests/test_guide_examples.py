"""The user guide's code runs as written.

Code blocks of docs/guide.md with a ``title="file"`` are that file's content
(blocks with the same title are concatenated in order). The app, its tests and its
client are written to a temporary directory and run: the tests with pytest, the
client against ``hetu dev`` with its output compared to the guide's.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from hetu.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
BIN = Path(sys.executable).parent
HETU = str(BIN / "hetu")
ONLINE = "    online: bool = hetu.property_field(False)\n"
LEVEL = "    level: np.int16 = hetu.property_field(1)\n"
BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)


def guide_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for title, body in BLOCK.findall(GUIDE.read_text()):
        files[title] = files.get(title, "") + body
    return files


def write(tmp_path: Path, files: dict[str, str], *names: str) -> None:
    for name in names:
        (tmp_path / name).write_text(files[name])


def test_guide_has_the_files() -> None:
    files = guide_files()
    for name in ("app.py", "client.py", "client.py output", "conftest.py",
                 "test_app.py", "pytest.ini", "worker refusal",
                 "migrate output"):  # fmt: skip
        assert files.get(name, "").strip(), f"docs/guide.md lost its {name} block"
    compile(files["app.py"], "app.py", "exec")


def test_guide_app_tests_pass(tmp_path: Path) -> None:
    files = guide_files()
    write(tmp_path, files, "app.py", "conftest.py", "test_app.py", "pytest.ini")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout


def test_guide_client_prints_what_the_guide_says(
    tmp_path: Path, redis_url: str
) -> None:
    files = guide_files()
    write(tmp_path, files, "app.py")
    port = free_port()
    default_url = 'URL = "ws://127.0.0.1:2466/hetu/default"'
    assert default_url in files["client.py"]
    client = files["client.py"].replace("2466", str(port))
    (tmp_path / "client.py").write_text(client)
    dev = subprocess.Popen(
        [HETU, "dev", "app.py", "--port", str(port), "--redis", redis_url],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert dev.stdout is not None
        for line in dev.stdout:
            if "ready" in line:
                break
        assert dev.poll() is None, f"hetu dev exited with {dev.returncode}"
        result = subprocess.run(
            [sys.executable, "client.py"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout == files["client.py output"]
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(30) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        if dev.stdout is not None:
            dev.stdout.close()


def test_guide_schema_change_and_migrate(tmp_path: Path, redis_url: str) -> None:
    files = guide_files()
    assert f"`{LEVEL.strip()}`" in GUIDE.read_text()

    def logic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "hetu-logic", *args, "--redis", redis_url],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    write(tmp_path, files, "app.py")
    first = logic("app.py", "--drain", "--log-level", "warning")
    assert first.returncode == 0, first.stderr[-3000:]
    app = (tmp_path / "app.py").read_text()
    assert ONLINE in app
    (tmp_path / "app.py").write_text(app.replace(ONLINE, ONLINE + LEVEL))
    refused = logic("app.py", "--drain", "--log-level", "warning")
    assert refused.returncode == 2
    assert files["worker refusal"].strip() in refused.stderr
    migrated = logic("migrate", "app.py")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert migrated.stdout == files["migrate output"]
    again = logic("app.py", "--drain", "--log-level", "warning")
    assert again.returncode == 0, again.stderr[-3000:]
