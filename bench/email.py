"""Benchmark: the email path against its own transport, side by side in one run.

    python bench/email.py [--recipients 20000] [--processes 1] [--rounds 2]
                          [--sink auto|smtp-sink|dev] [--batch-size 100]
    python bench/email.py --suppression-effect [--listed 100000] [--rounds 2]

Two kinds of run, interleaved ``--rounds`` times, each into a fresh SMTP sink:

- **ceiling** — the transport alone: ``--processes`` processes, each with the SMTP pool the
  workers use (``services.smtp``: ``smtp_pool_size`` sessions, pipelining when the server
  offers it), send their share of the same campaign's messages, rendered before the
  clock starts. Nothing else runs. **ceiling_aiosmtplib** is the same with aiosmtplib
  sessions (one reply awaited per command), the client the pool used before.
- **path** — the full email path: ``--processes`` worker processes (the email queue's
  processor, its concurrency from the settings) send the campaign: validate, suppression
  check, claim, render, sign when configured, send, record. Timed from the enqueue until
  the ledger shows every recipient sent, after a warm-up campaign has gone through the
  same workers (sessions open, templates compiled).

The sink is Postfix's ``smtp-sink`` (C, one process; Debian's ``postfix`` package, which
this script installs when it is missing and it runs as root with apt-get, keeping the
service stopped), so that it is not the limit; ``--sink dev`` uses the project's own
sink (``python -m newsletter_queue.services.sink``, slower). With ``smtp-sink`` the
sink counts messages (``-c``): *duplicates* are the messages it got beyond one per
recipient and *missing* are the recipients the ledger does not show sent. With the dev
sink both are counted per recipient at the sink.

Both kinds of process run on the event loop the product's own worker processes use
(``eventloop``: uvloop where installed; ``NLQ_EVENT_LOOP=asyncio`` for asyncio's).

Redis is REDIS_URL or the server the project would pick; each run has its own key prefix
and a temporary SQLite store, deleted afterwards. Progress goes to stderr; the last
stdout line is one JSON object::

    {"processes": 1, "sink": "smtp-sink", "ceiling": [msgs/s…],
     "ceiling_aiosmtplib": [msgs/s…], "path": [emails/s…], "ratio": R,
     "client_gain": G, "duplicates": 0, "missing": 0, ...}

``ratio`` is the median path rate over the median ceiling rate (1.0: the path costs
nothing beyond its transport); ``client_gain`` is our client's ceiling over
aiosmtplib's.

Where the time goes, from the same runs: ``path_cpu_us_per_email`` (the worker
processes' CPU, from ``/proc``, over the timed window), ``path_busy`` (their share of a
core), ``redis_cpu_us_per_email`` (``INFO cpu``) and ``sink_cpu_us_per_email``;
``ceiling_send_cpu_us`` and ``render_cpu_us`` (a ceiling process sending, and rendering
before its clock). Two bounds follow from them: ``render_and_send_bound``, the ratio one
process could reach if nothing but rendering and sending cost anything, and
``two_process_bound`` (one-process runs), how much faster than one CPU-bound process two
could be on this machine's cores, which Redis and the sink share.

``--suppression-effect`` measures the suppression check instead: path runs with the check
off and with it on against ``--listed`` other addresses of the tenant (none a recipient,
so both send the same mail), interleaved, and prints ``{"without": […], "with": […],
"ratio": R, "lookup_20_cpu_ms": …, "lookup_100_cpu_ms": …}`` (the median with the check
over the median without it, 1.0 = free; then the CPU time of one lookup of a chunk's 20
and of a batch's 100 recipients against that list, measured alone).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/email.py is named like the standard library's ``email`` package: keep this
# directory off sys.path so that ``import email`` (done by the stdlib) finds the real one.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from newsletter_queue import QueueManager, eventloop, load_settings
from newsletter_queue.campaigns import CampaignControl
from newsletter_queue.config import Settings
from newsletter_queue.connection import delete_prefix, resolve_redis_url
from newsletter_queue.jobs import Recipient
from newsletter_queue.launch import WorkerServices
from newsletter_queue.services.links import Links
from newsletter_queue.services.render import CompiledCampaign, Content
from newsletter_queue.services.send_ledger import CampaignLedger
from newsletter_queue.services.smtp import SmtpPool
from newsletter_queue.services.store import CampaignRecord
from newsletter_queue.system import System

TENANT = "bench"
CONTENT = Content(
    subject="Issue #1 for {{ name }}",
    html="<h1>Hello {{ name }}</h1><p>Plan: {{ personalizations.plan }}</p>"
         + "<p>This week's long read, in a paragraph of filler text.</p>" * 20,
    text="Hello {{ name }}, plan {{ personalizations.plan }}\n"
         + "This week's long read, in a paragraph of filler text.\n" * 10,
    from_addr="Bench <bench@example.com>")
WARMUP_PER_PROCESS = 300


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rows(campaign: str, count: int) -> list[dict[str, Any]]:
    return [{"email": f"{campaign}-user{i}@example.com", "name": f"User {i}",
             "personalizations": {"plan": "pro" if i % 2 else "free"}} for i in range(count)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- sinks ---------------------------------------------------------------------------------
def find_smtp_sink(install: bool) -> str | None:
    """Postfix's ``smtp-sink``; installed from Debian's packages (service kept stopped)
    when missing, if ``install`` and this process may."""
    for candidate in (shutil.which("smtp-sink"), "/usr/sbin/smtp-sink"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    _log("installing Debian's postfix for smtp-sink (its service is not started)")
    guard = Path("/usr/sbin/policy-rc.d")
    placed = not guard.exists()
    if placed:  # tells the package scripts not to start services
        guard.write_text("#!/bin/sh\nexit 101\n")
        guard.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["debconf-set-selections"], input=(
            "postfix postfix/main_mailer_type select No configuration\n"),
            text=True, check=False, env=env)
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postfix"], check=False,
                       env=env, stdout=subprocess.DEVNULL)
    finally:
        if placed:
            guard.unlink(missing_ok=True)
    return "/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None


class Sink:
    """A fresh sink for one run; ``messages()`` is what it accepted so far."""

    def __init__(self, kind: str, binary: str | None, workdir: Path) -> None:
        self.kind = kind
        self._count = 0
        self._lock = threading.Lock()
        if kind == "smtp-sink":
            assert binary is not None
            self.port = _free_port()
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            self.proc = subprocess.Popen(
                [binary, "-c", *user, f"127.0.0.1:{self.port}", "1024"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            threading.Thread(target=self._read_counter, daemon=True).start()
            self._wait_listening()
        else:
            self.stats_file = workdir / f"sink-{uuid.uuid4().hex[:6]}.json"
            self.proc = subprocess.Popen(  # type: ignore[assignment]  # text mode here
                [sys.executable, "-m", "newsletter_queue.services.sink", "--port", "0",
                 "--stats-file", str(self.stats_file)], stdout=subprocess.PIPE, text=True)
            assert self.proc.stdout is not None
            self.port = int(json.loads(self.proc.stdout.readline())["port"])

    def _read_counter(self) -> None:
        assert self.proc.stdout is not None
        buffer = b""
        while chunk := self.proc.stdout.read1(4096):  # type: ignore[attr-defined]
            buffer = (buffer + chunk)[-256:]
            found = re.findall(rb"mesg=(\d+)", buffer)
            if found:
                with self._lock:
                    self._count = int(found[-1])

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise SystemExit(f"smtp-sink did not listen on port {self.port}")

    def counted(self) -> int:
        """Messages ``smtp-sink`` has counted so far."""
        with self._lock:
            return self._count

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> dict[str, int]:
        """Stop it; the count of messages (and, from the dev sink, per recipient)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        if self.kind == "smtp-sink":
            return {"": self.counted()}
        counts: dict[str, int] = json.loads(self.stats_file.read_text())["counts"]
        return counts


# --- the ceiling: the transport alone --------------------------------------------------------
class AiosmtplibPool:
    """The comparison client: ``size`` aiosmtplib sessions (one reply awaited per
    command), handed out as ``SmtpPool`` hands out its own."""

    def __init__(self, url: str, size: int) -> None:
        self.host, _, port = url.removeprefix("smtp://").partition(":")
        self.port = int(port)
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(size)

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        import aiosmtplib

        async with self._slots:
            client = self._idle.pop() if self._idle else aiosmtplib.SMTP(
                hostname=self.host, port=self.port, start_tls=False)
            if not client.is_connected:
                await client.connect()
            _errors, reply = await client.sendmail(sender, [recipient], message)
            self._idle.append(client)
            return str(reply)

    async def close(self) -> None:
        for client in self._idle:
            await client.quit()


async def ceiling_role(url: str, campaign: str, start: int, count: int,
                       settings: Settings, client: str) -> None:
    """One ceiling process: render its share first, open the sessions, wait for ``go`` on
    stdin, send, print ``{"start": t, "end": t}`` (wall clock)."""
    compiled = CompiledCampaign(TENANT, campaign, CONTENT, default_from=settings.mail_from,
                                links=Links.from_settings(settings))
    rows = _rows(campaign, start + count)[start:]
    recipients = [Recipient.model_validate(r) for r in rows]
    render_cpu = time.process_time()
    messages = [(r.email, compiled.render(r)[1]) for r in recipients]
    render_cpu = time.process_time() - render_cpu
    pool: SmtpPool | AiosmtplibPool = (
        SmtpPool(url, size=settings.smtp_pool_size, timeout=settings.smtp_timeout_s)
        if client == "ours" else AiosmtplibPool(url, settings.smtp_pool_size))
    sender = compiled.envelope_for(rows[0]["email"])
    await asyncio.gather(*(pool.send(sender, "warmup@example.com", messages[0][1])
                           for _ in range(settings.smtp_pool_size)))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    began, send_cpu = time.time(), time.process_time()
    in_flight = settings.smtp_pool_size * 12  # like 5 batches' chunks of 20 at once
    for at in range(0, len(messages), in_flight):
        await asyncio.gather(*(pool.send(sender, email, message)
                               for email, message in messages[at:at + in_flight]))
    print(json.dumps({"start": began, "end": time.time(),
                      "send_cpu": time.process_time() - send_cpu, "render_cpu": render_cpu}),
          flush=True)
    await pool.close()


def run_ceiling(sink: Sink, processes: int, recipients: int, client: str
                ) -> dict[str, float]:
    """One ceiling run: msgs/s, and the CPU (µs a message) of sending and of rendering."""
    campaign = f"ceiling-{uuid.uuid4().hex[:6]}"
    share = -(-recipients // processes)
    procs = [_spawn(["--role", "ceiling", "--client", client, "--url", sink.url,
                     "--campaign", campaign,
                     "--start", str(i * share),
                     "--count", str(min(share, recipients - i * share))])
             for i in range(processes)]
    for proc in procs:
        _expect(proc, "ready")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    spans = [json.loads(_line(proc)) for proc in procs]
    for proc in procs:
        proc.wait(30)
    seconds = max(s["end"] for s in spans) - min(s["start"] for s in spans)
    return {"rate": round(recipients / seconds, 1),
            "send_cpu_us": round(sum(s["send_cpu"] for s in spans) / recipients * 1e6, 1),
            "render_cpu_us": round(sum(s["render_cpu"] for s in spans) / recipients * 1e6, 1)}


# --- the path: worker processes -----------------------------------------------------------
async def worker_role(url: str, settings: Settings, suppression_check: bool) -> None:
    """One worker process: the email queue's processor until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    services = await WorkerServices(settings, smtp_url=url).open()
    system = System(settings, shutdown_timeout=10)
    try:
        registry = services.registry()
        if not suppression_check:
            assert services.email is not None
            services.email.suppressions = None
        services.attach_hooks(system.start_workers(registry, ["email"]))
        print("ready", flush=True)
        profile = os.environ.get("NLQ_BENCH_PROFILE")  # a file for pyinstrument's text
        if profile:
            from pyinstrument import Profiler

            with Profiler(async_mode="disabled") as profiler:
                await stop.wait()
            await asyncio.to_thread(Path(f"{profile}.{os.getpid()}").write_text,
                                    profiler.output_text(show_all=False))
        else:
            await stop.wait()
    finally:
        await system.stop()
        await services.close()


async def run_path(sink: Sink, processes: int, recipients: int, batch_size: int,
                   workdir: Path, listed: int | None, timeout_s: float) -> dict[str, Any]:
    """One path run; ``listed`` other addresses on the suppression list first, or ``None``:
    the check switched off."""
    prefix = f"nlqbench-{uuid.uuid4().hex[:8]}"
    env = {"NLQ_KEY_PREFIX": prefix, "NLQ_STATE_DIR": str(workdir / prefix)}
    settings = _settings(prefix, workdir / prefix)
    manager = QueueManager(settings)
    store_services = await WorkerServices(settings, smtp_url=sink.url).open()
    procs: list[subprocess.Popen[str]] = []
    try:
        store = store_services.store
        assert store is not None
        for campaign in ("warmup", "c1"):
            await store.upsert_campaign(CampaignRecord(
                tenant_id=TENANT, campaign_id=campaign, subject=CONTENT.subject,
                html=CONTENT.html, text=CONTENT.text, from_addr=CONTENT.from_addr))
        for start in range(0, listed or 0, 10_000):
            await store.suppress(TENANT, [f"listed{i}@example.org" for i in
                                          range(start, min(start + 10_000, listed or 0))],
                                 "manual")
        extra = [] if listed is not None else ["--no-suppression-check"]
        procs = [_spawn(["--role", "worker", "--url", sink.url, *extra], env)
                 for _ in range(processes)]
        for proc in procs:
            _expect(proc, "ready")
        client = await manager.client()
        warmup = WARMUP_PER_PROCESS * processes
        await manager.schedule_batch_email_sending("warmup", TENANT, _rows("warmup", warmup),
                                                   batch_size)
        await _until_sent(client, prefix, "warmup", warmup, 120)
        rows = _rows("c1", recipients)
        cpu_before = [_cpu_seconds(proc.pid) for proc in procs]
        redis_before = await _redis_cpu_seconds(client)
        sink_before = _cpu_seconds(sink.proc.pid)
        started = time.perf_counter()
        await manager.schedule_batch_email_sending("c1", TENANT, rows, batch_size)
        sent = await _until_sent(client, prefix, "c1", recipients, timeout_s)
        seconds = time.perf_counter() - started
        cpu = sum(_cpu_seconds(proc.pid) for proc in procs) - sum(cpu_before)
        redis_cpu = await _redis_cpu_seconds(client) - redis_before
        sink_cpu = _cpu_seconds(sink.proc.pid) - sink_before
        await _settle(sink, warmup + recipients)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        await store_services.close()
        await delete_prefix(await manager.client(), prefix)
        await manager.close()
    return {"rate": round(sent / seconds, 1), "sent": sent, "warmup": warmup,
            "rows": [r["email"] for r in rows],
            "cpu_us": round(cpu / max(sent, 1) * 1e6, 1),
            "busy": round(cpu / seconds / len(procs), 2),
            "redis_cpu_us": round(redis_cpu / max(sent, 1) * 1e6, 1),
            "sink_cpu_us": round(sink_cpu / max(sent, 1) * 1e6, 1)}


async def _redis_cpu_seconds(client: Any) -> float:
    """The Redis server's own CPU time so far (``INFO cpu``), whatever else it serves."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _until_sent(client: Any, prefix: str, campaign: str, expected: int,
                      timeout_s: float) -> int:
    """Wait until ``expected`` recipients of ``campaign`` are settled; returns how many
    its ledger shows sent. Polls the campaign's counters (a small hash the workers update
    after every chunk): reading the whole ledger every few ms cost Redis and this
    process, which share the workers' cores, a good part of a core at 20,000 recipients.
    The ledger is read once the counters are complete, and is what the result counts."""
    counters = CampaignControl(client, prefix, TENANT, campaign).counts_key
    deadline = time.perf_counter() + timeout_s
    last_said = 0
    while time.perf_counter() < deadline:
        values = await client.hmget(counters, ["sent", "bounced", "failed"])
        settled = sum(int(v or 0) for v in values)
        if settled >= expected:
            break
        if settled - last_said >= 5000:
            last_said = settled
            _log(f"    {settled} settled")
        await asyncio.sleep(0.02)  # a polling interval, not a settle delay
    counts = await CampaignLedger(client, prefix, TENANT, campaign).counts()
    return counts.sent


async def _settle(sink: Sink, expected: int) -> None:
    """Give the sink a moment to count the last messages (``smtp-sink`` counts at ".")."""
    if sink.kind != "smtp-sink":
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if sink.counted() >= expected:
            return
        await asyncio.sleep(0.02)


async def lookup_cost(listed: int, workdir: Path) -> dict[str, float]:
    """CPU ms of one suppression lookup of 20 and of 100 recipients (none listed) against
    a list of ``listed`` addresses in a SQLite store: the check's cost per chunk and per
    batch job, without the noise of a whole send."""
    settings = _settings("nlqbench-lookup", workdir / "lookup")
    services = await WorkerServices(settings, smtp_url="smtp://127.0.0.1:25").open()
    try:
        store = services.store
        assert store is not None
        for start in range(0, listed, 10_000):
            await store.suppress(TENANT, [f"listed{i}@example.org" for i in
                                          range(start, min(start + 10_000, listed))], "manual")
        cost: dict[str, float] = {}
        for size in (20, 100):
            emails = [f"user{i}@example.com" for i in range(size)]
            for _ in range(50):  # warm the statement cache and the pages
                await store.suppressed(TENANT, emails)
            began = time.process_time()
            for _ in range(300):
                await store.suppressed(TENANT, emails)
            cost[f"lookup_{size}_cpu_ms"] = round((time.process_time() - began) / 300 * 1000, 3)
        return cost
    finally:
        await services.close()


# --- processes --------------------------------------------------------------------------------
def _settings(prefix: str = "nlqbench", state_dir: Path | None = None) -> Settings:
    """The bench's settings: REDIS_URL as the parent resolved it, no send-rate limits —
    neither per email nor the email queue's 50 batch jobs a second (5,000 emails a second
    in batches of 100, which two processes reach)."""
    settings = load_settings(key_prefix=prefix,
                             state_dir=state_dir or Path(tempfile.gettempdir()),
                             emails_per_second=1_000_000,
                             emails_per_second_per_tenant=1_000_000)
    email = settings.queue_config("email").model_copy(update={"rate_limit": None})
    return settings.model_copy(update={"queues": {**settings.queues, "email": email}})


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, **(env or {})})


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"bench process {proc.pid} ended early (exit {proc.wait()})")
    return line.strip()


def _expect(proc: subprocess.Popen[str], word: str) -> None:
    line = _line(proc)
    if line != word:
        raise SystemExit(f"bench process {proc.pid} said {line!r}, not {word!r}")


@contextmanager
def _sink(kind: str, binary: str | None, workdir: Path) -> Iterator[Sink]:
    sink = Sink(kind, binary, workdir)
    try:
        yield sink
    finally:
        if sink.proc.poll() is None:
            sink.stop()


def _path_run(args: argparse.Namespace, kind: str, binary: str | None, workdir: Path,
              listed: int | None) -> dict[str, Any]:
    with _sink(kind, binary, workdir) as sink:
        run = asyncio.run(run_path(sink, args.processes, args.recipients, args.batch_size,
                                   workdir, listed, args.timeout))
        counts = sink.stop()
    if kind == "smtp-sink":
        delivered = counts[""] - run["warmup"]
        run["duplicates"] = max(delivered - args.recipients, 0)
        run["missing"] = args.recipients - run["sent"]
    else:
        run["duplicates"] = sum(counts.get(e, 0) - 1 for e in run["rows"]
                                if counts.get(e, 0) > 1)
        run["missing"] = sum(1 for e in run["rows"] if not counts.get(e))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--processes", type=int, choices=(1, 2), default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sink", choices=("auto", "smtp-sink", "dev"), default="auto")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--suppression-effect", action="store_true",
                        help="compare path runs without and with the suppression check")
    parser.add_argument("--listed", type=int, default=100_000,
                        help="addresses on the suppression list in the runs with the check")
    parser.add_argument("--role", choices=("ceiling", "worker"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=("ours", "aiosmtplib"), default="ours",
                        help=argparse.SUPPRESS)
    parser.add_argument("--campaign", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--no-suppression-check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "ceiling":
        settings = _settings()
        eventloop.run(ceiling_role(args.url, args.campaign, args.start, args.count,
                                   settings, args.client), settings.event_loop)
        return
    if args.role == "worker":
        settings = _settings(os.environ["NLQ_KEY_PREFIX"], Path(os.environ["NLQ_STATE_DIR"]))
        eventloop.run(worker_role(args.url, settings, not args.no_suppression_check),
                      settings.event_loop)
        return

    # One Redis for every process of the run (an embedded one, if the project would start
    # one, is started here and shared).
    os.environ["REDIS_URL"] = resolve_redis_url(load_settings())
    binary = find_smtp_sink(install=args.sink != "dev") if args.sink != "dev" else None
    if args.sink == "smtp-sink" and binary is None:
        raise SystemExit("smtp-sink is not installed and could not be installed")
    kind = "smtp-sink" if binary else "dev"
    workdir = Path(tempfile.mkdtemp(prefix="nlq-bench-email-"))
    _log(f"sink: {kind}; {args.processes} process(es); {args.recipients} recipients")
    try:
        if args.suppression_effect:
            rates: dict[str, list[float]] = {"without": [], "with": []}
            for _ in range(args.rounds):
                for label, listed in (("without", None), ("with", args.listed)):
                    run = _path_run(args, kind, binary, workdir, listed)
                    if run["missing"]:
                        raise SystemExit(f"{label}: {run['missing']} recipients missing")
                    _log(f"  {label}: {run['rate']} emails/s")
                    rates[label].append(run["rate"])
            cost = asyncio.run(lookup_cost(args.listed, workdir))
            print(json.dumps({**rates, "listed": args.listed, "recipients": args.recipients,
                              "sink": kind, **cost, "ratio": round(
                                  statistics.median(rates["with"])
                                  / statistics.median(rates["without"]), 3)}))
            return
        ceiling: list[float] = []
        ceiling_aiosmtplib: list[float] = []
        path: list[float] = []
        cpu_us: list[float] = []
        busy: list[float] = []
        others: dict[str, list[float]] = {"redis_cpu_us": [], "sink_cpu_us": []}
        duplicates = missing = 0
        clients = [("ours", ceiling)]
        if importlib.util.find_spec("aiosmtplib") is not None:  # the test extra has it
            clients.append(("aiosmtplib", ceiling_aiosmtplib))
        ceiling_cpu: dict[str, list[float]] = {"send_cpu_us": [], "render_cpu_us": []}
        for _ in range(args.rounds):
            for client, client_rates in clients:
                with _sink(kind, binary, workdir) as sink:
                    measured = run_ceiling(sink, args.processes, args.recipients, client)
                client_rates.append(measured["rate"])
                if client == "ours":
                    for name, values in ceiling_cpu.items():
                        values.append(measured[name])
                _log(f"  ceiling ({client}): {client_rates[-1]} msgs/s")
            run = _path_run(args, kind, binary, workdir, 0)
            path.append(run["rate"])
            cpu_us.append(run["cpu_us"])
            busy.append(run["busy"])
            for name, values in others.items():
                values.append(run[name])
            duplicates += run["duplicates"]
            missing += run["missing"]
            _log(f"  path: {run['rate']} emails/s")
        print(json.dumps({
            "processes": args.processes, "recipients": args.recipients, "sink": kind,
            "event_loop": "uvloop" if eventloop.loop_factory(_settings().event_loop)
            else "asyncio",
            "counted": ("duplicates by the sink's message count, missing by the ledger"
                        if kind == "smtp-sink" else "both per recipient at the sink"),
            "ceiling": ceiling, "ceiling_aiosmtplib": ceiling_aiosmtplib, "path": path,
            "path_cpu_us_per_email": cpu_us, "path_busy": busy,
            "redis_cpu_us_per_email": others["redis_cpu_us"],
            "sink_cpu_us_per_email": others["sink_cpu_us"],
            "ceiling_send_cpu_us": ceiling_cpu["send_cpu_us"],
            "render_cpu_us": ceiling_cpu["render_cpu_us"],
            # The path renders and sends: with nothing else costing anything, one
            # process could reach at most this share of the ceiling.
            "render_and_send_bound": round(min(1.0, 1e6 / (
                statistics.median(ceiling_cpu["send_cpu_us"])
                + statistics.median(ceiling_cpu["render_cpu_us"]))
                / statistics.median(ceiling)), 3),
            # On a machine of ``cores`` CPUs shared with Redis and the sink, two worker
            # processes can go at most this much faster than one that is CPU-bound.
            "two_process_bound": round(min(2, os.cpu_count() or 1) * statistics.median(
                cpu_us) / (statistics.median(cpu_us) + statistics.median(
                    others["redis_cpu_us"]) + statistics.median(others["sink_cpu_us"])), 3)
            if args.processes == 1 else None,
            "duplicates": duplicates, "missing": missing,
            "ratio": round(statistics.median(path) / statistics.median(ceiling), 3),
            "client_gain": round(statistics.median(ceiling)
                                 / statistics.median(ceiling_aiosmtplib), 3)
            if ceiling_aiosmtplib else None}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
