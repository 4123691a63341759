"""Every ```python block of the README and of the documentation site (``docs/``) runs,
against a real Redis, under its own prefix; and the README's links into ``docs/`` resolve
(``mkdocs build --strict`` in ``scripts/test`` checks the links between the pages).

A block right after the line ``<!-- example: with ./scripts/up running -->`` is run as
its text says: beside ``newsletter-queue up`` (workers, dev SMTP sink, records store,
API) on the same Redis, key prefix and state directory, so it can send a campaign and
watch it complete. The system is stopped with SIGTERM afterwards and must exit cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


WITH_UP = "<!-- example: with ./scripts/up running -->"


def _blocks(page: Path) -> list[tuple[str, bool]]:
    """``(code, needs_up)`` of each ```python block of ``page``."""
    found = re.findall(r"(" + re.escape(WITH_UP) + r"\n)?```python\n(.*?)```",
                       page.read_text(encoding="utf-8"), re.S)
    return [(code, bool(marker)) for marker, code in found]


EXAMPLES = [(page.relative_to(ROOT).as_posix(), number, block, needs_up)
            for page in PAGES
            for number, (block, needs_up) in enumerate(_blocks(page), start=1)]

RUNNER = """
import ast, asyncio, sys
source = sys.stdin.read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
async def main():
    result = eval(code, {"__name__": "__main__"})
    if asyncio.iscoroutine(result):
        await result
asyncio.run(main())
"""


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 10
    assert any(page == "README.md" for page, _, _, _ in EXAMPLES)
    assert any(page == "README.md" and needs_up for page, _, _, needs_up in EXAMPLES)


@pytest.mark.timeout(400)  # a system to start and stop, a campaign to send on a slow machine
@pytest.mark.parametrize(("page", "number", "block", "needs_up"),
                         [pytest.param(*example, id=f"{example[0]}-{example[1]}")
                          for example in EXAMPLES])
def test_readme_example_runs(page: str, number: int, block: str, needs_up: bool,
                             redis_url: str, prefix: str, redis_client: object,
                             tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NLQ_", "SMTP_URL", "DATABASE_URL"))}
    env.update(REDIS_URL=redis_url, NLQ_KEY_PREFIX=prefix, NLQ_STATE_DIR=str(tmp_path))
    with _system_running(env, tmp_path) if needs_up else _nothing():
        result = subprocess.run([sys.executable, "-c", RUNNER, f"{page} example {number}"],
                                input=block, text=True, capture_output=True, env=env,
                                cwd=tmp_path, timeout=300 if needs_up else 60, check=False)
    assert result.returncode == 0, f"{page} example {number} failed:\n{block}\n" \
                                   f"{result.stderr}"


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _system_running(env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """``newsletter-queue up`` in the example's environment, until the block has run."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log_path = tmp_path / "up.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "newsletter-queue"), "up", "--port", str(port)],
            env={**env, "NLQ_DEV_SMTP_PORT": "0"}, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"http://127.0.0.1:{port}/healthz"):
            assert proc.poll() is None, f"up exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, \
                f"up did not answer in 120 s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.1)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, f"up did not stop cleanly:\n{log_path.read_text()[-3000:]}"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs both write it for plain words."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [link for link in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in link]
    assert any(link.startswith("docs/") for link in links)
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M) \
            if target.is_file() else []
        if not target.is_file() or (anchor and anchor not in {_slug(h) for h in headings}):
            broken.append(link)
    assert broken == []
