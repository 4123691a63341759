"""Run the Node BullMQ harness in ``tests/node`` from Python tests and benchmarks.

Node is used only to prove interoperability with Node BullMQ (producers, workers,
dashboards) and as a benchmark reference; the product never runs it.

Why the packages are installed outside the repository: the harness's ``node_modules``
is built by ``npm ci`` from the committed ``package-lock.json`` into a cache directory
named after the hash of ``package.json`` + ``package-lock.json``
(``$NEWSLETTER_QUEUE_NODE_CACHE`` or the user cache dir; not ``NLQ_``-prefixed
because the test suite strips those variables). Each tree is built in a staging directory
and renamed into place, under an exclusive file lock, so parallel test sessions (and
several checkouts) share one immutable install and never see a half-written one, and
nothing is written into the working tree. The scripts find it through
``NLQ_NODE_MODULES``; a hand-made ``npm ci`` in ``tests/node`` (gitignored) works too.

Policy used by the tests: a missing ``node`` is a reason to skip (``node_available``);
any failure after that — npm missing, ``npm ci`` failing, a script failing — raises
``NodeHarnessError`` so the test fails loudly instead of passing by skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import platformdirs

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
MIN_NODE_MAJOR = 18  # bullmq 5 needs a maintained Node; 18 is the oldest we try
INSTALL_TIMEOUT_S = 600.0
_COMPLETE_MARKER = ".nlq-install-complete"


class NodeHarnessError(RuntimeError):
    """The harness could not be installed, or a harness script failed.

    Attributes:
        result: the script's JSON summary when it printed one before failing.
        stderr: the tail of the process's stderr.
    """

    def __init__(self, message: str, *, stderr: str = "", result: Any = None) -> None:
        self.stderr = stderr
        self.result = result
        tail = stderr.strip()[-4000:]
        super().__init__(f"{message}\n--- stderr ---\n{tail}" if tail else message)


def node_binary() -> str | None:
    """The ``node`` executable on PATH, if any."""
    return shutil.which("node")


def node_available() -> str | None:
    """``None`` when a usable ``node`` is on PATH, else the reason it is not."""
    node = node_binary()
    if node is None:
        return "node is not on PATH (Node BullMQ interoperability needs Node.js >= 18)"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"node at {node} does not run: {exc}"
    match = re.match(r"v(\d+)\.", out)
    if not match:
        return f"cannot parse the output of `node --version`: {out!r}"
    if int(match.group(1)) < MIN_NODE_MAJOR:
        return f"node {out} is too old; the harness needs Node.js >= {MIN_NODE_MAJOR}"
    return None


def pinned_bullmq_version() -> str:
    """The exact ``bullmq`` version ``tests/node/package.json`` pins."""
    manifest = json.loads((NODE_DIR / "package.json").read_text(encoding="utf-8"))
    return str(manifest["dependencies"]["bullmq"])


def cache_root() -> Path:
    """Where installed harness trees live (``$NEWSLETTER_QUEUE_NODE_CACHE`` overrides)."""
    override = os.environ.get("NEWSLETTER_QUEUE_NODE_CACHE")
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("newsletter-queue", appauthor=False)) / "node-harness"


def _manifest_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        path = NODE_DIR / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _exclusive_lock(path: Path, timeout: float) -> Iterator[None]:
    """An inter-process lock on ``path`` (flock; waits at most ``timeout`` seconds)."""
    import fcntl  # POSIX only, as are the CI images the interop tests run on

    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NodeHarnessError(
                        f"another process held {path} for more than {timeout:.0f}s"
                    ) from None
                time.sleep(0.1)  # polling a lock held by another process
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_node_modules() -> Path:
    """Install the harness's npm packages (once per lock file) and return their root.

    The returned directory contains ``node_modules``; pass it to the scripts as
    ``NLQ_NODE_MODULES`` (``run_node`` does). Raises ``NodeHarnessError`` when npm is
    missing or the install fails.
    """
    root = cache_root()
    digest = _manifest_digest()
    target = root / digest
    if (target / _COMPLETE_MARKER).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / f"{digest}.lock", INSTALL_TIMEOUT_S + 60):
        if (target / _COMPLETE_MARKER).is_file():
            return target
        _install_into(target)
    return target


def _install_into(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise NodeHarnessError("npm is not on PATH, so the Node BullMQ harness cannot be "
                               "installed (node is present)")
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    has_lock = (NODE_DIR / "package-lock.json").exists()
    for name in ("package.json", "package-lock.json") if has_lock else ("package.json",):
        shutil.copy2(NODE_DIR / name, staging / name)
    # No lifecycle scripts: bullmq needs none (msgpackr falls back to pure JS), and
    # running none keeps the install side-effect free.
    command = [npm, "ci" if has_lock else "install", "--no-audit", "--no-fund",
               "--ignore-scripts", "--loglevel=error"]
    try:
        proc = subprocess.run(command, cwd=staging, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise NodeHarnessError(f"`{' '.join(command[1:])}` took longer than "
                               f"{INSTALL_TIMEOUT_S:.0f}s in {staging}") from exc
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise NodeHarnessError(
            f"`npm {' '.join(command[1:])}` failed with status {proc.returncode} "
            f"(installing the Node BullMQ test harness from {NODE_DIR})",
            stderr=proc.stderr + proc.stdout,
        )
    installed = staging / "node_modules" / "bullmq" / "package.json"
    wanted = pinned_bullmq_version()
    found = json.loads(installed.read_text(encoding="utf-8"))["version"] if installed.exists() \
        else None
    if found != wanted:
        shutil.rmtree(staging, ignore_errors=True)
        raise NodeHarnessError(f"npm installed bullmq {found}, package.json pins {wanted}")
    (staging / _COMPLETE_MARKER).write_text(f"bullmq {found}\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)  # a leftover without the marker
    os.replace(staging, target)


def _command(script: str, args: Sequence[str]) -> list[str]:
    node = node_binary()
    if node is None:
        raise NodeHarnessError("node is not on PATH")
    path = NODE_DIR / script
    if not path.is_file():
        raise NodeHarnessError(f"no harness script {path}")
    return [node, str(path), *args]


def _env(modules: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["NLQ_NODE_MODULES"] = str(modules)
    env.pop("NODE_OPTIONS", None)  # a developer's --inspect etc. must not leak in
    return env


def _parse(script: str, returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    result: Any = None
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = None
    if returncode != 0:
        raise NodeHarnessError(f"{script} exited with status {returncode}; "
                               f"summary: {json.dumps(result)}", stderr=stderr, result=result)
    if not isinstance(result, dict):
        raise NodeHarnessError(f"{script} printed no JSON object as its last line: "
                               f"{stdout[-500:]!r}", stderr=stderr)
    return result


def run_node(
    script: str,
    args: Sequence[str],
    timeout: float,
    *,
    stdin: Any = None,
    modules: Path | None = None,
) -> dict[str, Any]:
    """Run ``tests/node/<script> *args`` with ``stdin`` as JSON; return its JSON summary.

    Blocking: use ``arun_node`` inside a running event loop.

    Raises:
        NodeHarnessError: on a non-zero exit (the summary, if printed, is ``.result``),
            on a timeout, or when the output is not JSON.
    """
    command = _command(script, args)
    env = _env(modules or ensure_node_modules())
    payload = json.dumps(stdin) if stdin is not None else ""
    try:
        proc = subprocess.run(command, input=payload, capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) \
            else (exc.stderr or "")
        raise NodeHarnessError(f"{script} did not finish within {timeout}s",
                               stderr=err) from exc
    return _parse(script, proc.returncode, proc.stdout, proc.stderr)


async def arun_node(
    script: str,
    args: Sequence[str],
    timeout: float,
    *,
    stdin: Any = None,
    modules: Path | None = None,
) -> dict[str, Any]:
    """``run_node`` for async code: the event loop keeps running while Node works."""
    command = _command(script, args)
    if modules is None:
        modules = await asyncio.to_thread(ensure_node_modules)
    env = _env(modules)
    proc = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    payload = (json.dumps(stdin) if stdin is not None else "").encode()
    try:
        out, err = await asyncio.wait_for(proc.communicate(payload), timeout)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
        raise NodeHarnessError(f"{script} did not finish within {timeout}s",
                               stderr=err.decode(errors="replace")) from None
    assert proc.returncode is not None
    return _parse(script, proc.returncode, out.decode(), err.decode(errors="replace"))
