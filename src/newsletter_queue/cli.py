"""The ``newsletter-queue`` / ``nlq`` command line (Typer + Rich).

Every command builds ``Settings`` from the environment, so ``REDIS_URL``,
``NLQ_KEY_PREFIX`` and the other variables work the same here as in the library. Read
commands accept ``--json`` (machine-readable output on stdout); messages and errors go
to stderr. Exit codes: 0 success, 1 an error (unknown queue, Redis unreachable …);
``health`` answers 0 healthy, 1 warning, 2 critical.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import eventloop
from .admin import QueueAdmin
from .config import Settings, load_settings
from .dev import DevTools, render_report
from .engine.states import OVERVIEW_STATES, JobState
from .errors import NewsletterQueueError
from .manager import QueueManager
from .monitor import QueueMonitor
from .snapshots import QueueStats

app = typer.Typer(
    name="newsletter-queue",
    help="Background jobs for a newsletter platform: email, analytics and AI queues.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
QueueArg = Annotated[str, typer.Argument(help="Queue name: email, analytics or ai.")]
HostOpt = Annotated[str, typer.Option(help="Address to bind the API to.")]
PortOpt = Annotated[int, typer.Option(help="Port of the API and dashboard.")]
HEALTH_EXIT = {"healthy": 0, "warning": 1, "critical": 2}


def _run(factory: Callable[[], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run a coroutine; turn our errors into a one-line message and exit code 1. With
    ``settings`` (the long-running commands) on the event loop they choose."""
    try:
        if settings is not None:
            eventloop.log_to_stderr(settings.log_level)
            return eventloop.run(factory(), settings.event_loop)  # type: ignore[arg-type]
        return asyncio.run(factory())  # type: ignore[arg-type]
    except NewsletterQueueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _settings() -> Settings:
    """The settings from the environment; an invalid one is a one-line error, exit 1."""
    try:
        return load_settings()
    except NewsletterQueueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def stats_table(stats: dict[str, QueueStats]) -> Table:
    table = Table(title="Queues")
    table.add_column("queue", no_wrap=True, min_width=9)
    for column in OVERVIEW_STATES:
        table.add_column(column, justify="right")
    table.add_column("paused")
    for name, s in stats.items():
        table.add_row(name, *(str(getattr(s, JobState(c).field)) for c in OVERVIEW_STATES),
                      "yes" if s.is_paused else "no")
    return table


async def _with_tools(fn: Callable[[DevTools], Awaitable[T]]) -> T:
    async with DevTools(_settings()) as tools:
        return await fn(tools)


def _admin(fn: Callable[[QueueAdmin], Awaitable[T]]) -> T:
    """Run one ``QueueAdmin`` operation on a manager of its own."""
    async def go() -> T:
        async with QueueManager(_settings()) as manager:
            return await fn(manager.admin)

    return _run(go)


# --- reads ---------------------------------------------------------------------------------
@app.command()
def stats(as_json: JsonFlag = False) -> None:
    """Job counts by state for every queue."""
    result = _admin(lambda a: a.get_all_queue_stats())
    if as_json:
        _print_json({k: v.to_dict() for k, v in result.items()})
    else:
        console.print(stats_table(result))


@app.command()
def health(as_json: JsonFlag = False) -> None:
    """Health of Redis and every queue; exit 0 healthy, 1 warning, 2 critical."""

    async def go() -> Any:
        async with QueueMonitor(_settings()) as monitor:
            return await monitor.generate_report(errors=0)

    report = _run(go)
    if as_json:
        _print_json({"status": report.status, "redis": report.redis.to_dict(),
                     "queues": {q: h.to_dict() for q, h in report.health.items()}})
    else:
        redis = report.redis
        state = "[green]reachable[/]" if redis.ok else f"[red]unreachable[/] ({redis.error})"
        console.print(f"Redis {redis.url} {redis.version or ''}: {state}")
        console.print(render_report(report))
        console.print(f"overall: [bold]{report.status}[/]")
    raise typer.Exit(HEALTH_EXIT[report.status])


@app.command()
def monitor(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    once: Annotated[bool, typer.Option(help="Print one snapshot and exit.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Live table of every queue (Ctrl-C to stop)."""
    if once or as_json:
        async def snapshot() -> Any:
            async with QueueMonitor(_settings()) as mon:
                return await mon.generate_report(errors=5)

        report = _run(snapshot)
        if as_json:
            _print_json(report.to_dict())
        else:
            console.print(render_report(report))
        return
    _run(lambda: _with_tools(lambda t: t.monitor(duration=duration, interval=interval,
                                                 console=console)))


@app.command()
def inspect(queue: QueueArg, as_json: JsonFlag = False) -> None:
    """Counts, metrics, health, workers, newest jobs and recent errors of one queue."""
    data = _run(lambda: _with_tools(lambda t: t.inspect(queue)))
    if as_json:
        _print_json(data)
        return
    m, h = data["metrics"], data["health"]
    console.print(f"[bold]{queue}[/] — {h['status']}" +
                  (f" ({'; '.join(h['reasons'])})" if h["reasons"] else ""))
    counts = Table(title="Jobs by state")
    for key in OVERVIEW_STATES:
        counts.add_column(key, justify="right")
    counts.add_row(*(str(m["counts"].get(k, 0)) for k in OVERVIEW_STATES))
    console.print(counts)
    p = m["processing_ms"]
    console.print(f"last hour: {m['completed_last_hour']} completed, {m['failed_last_hour']} "
                  f"failed; p50/p95/p99 {p['p50']}/{p['p95']}/{p['p99']} ms; workers "
                  f"{m['workers']}; paused {m['is_paused']}")
    for state, jobs in data["jobs"].items():
        table = Table(title=f"newest {state}")
        for column in ("id", "name", "attempts", "reason"):
            table.add_column(column)
        for job in jobs:
            table.add_row(str(job["id"]), str(job["name"]), str(job["attempts_made"]),
                          str(job["failed_reason"] or ""))
        console.print(table)


@app.command()
def errors(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many errors.")] = 20,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The most recent failed attempts (newest first)."""

    async def go() -> Any:
        async with QueueMonitor(_settings()) as mon:
            return await mon.get_recent_errors(limit, queue)

    found = _run(go)
    if as_json:
        _print_json([e.to_dict() for e in found])
        return
    table = Table(title="Recent errors")
    for column in ("time", "queue", "job", "name", "attempt", "error"):
        table.add_column(column)
    for e in found:
        d = e.to_dict()
        table.add_row(str(d["time"]), e.queue, e.job_id, e.name,
                      f"{e.attempt}/{e.max_attempts}{' final' if e.final else ''}", e.error)
    console.print(table)


@app.command()
def report(
    fmt: Annotated[str, typer.Option("--format", help="md or json.")] = "md",
    as_json: JsonFlag = False,
) -> None:
    """A monitoring report of every queue, as Markdown or JSON."""
    if fmt not in ("md", "json"):
        err_console.print("[bold red]error:[/] --format must be md or json")
        raise typer.Exit(2)

    async def go() -> Any:
        async with QueueMonitor(_settings()) as mon:
            return await mon.generate_report()

    result = _run(go)
    sys.stdout.write((result.to_json() if as_json or fmt == "json" else result.to_markdown())
                     + "\n")


@app.command("export")
def export_queue(
    queue: QueueArg,
    output: Annotated[Path | None, typer.Option(help="File to write (NDJSON).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write every job of a queue to an NDJSON file and print its path."""
    path = _run(lambda: _with_tools(lambda t: t.export_queue_data(queue, output)))
    lines = sum(1 for _ in path.open(encoding="utf-8"))
    if as_json:
        _print_json({"path": str(path), "jobs": lines})
    else:
        console.print(f"{lines} job(s) written to {path}", soft_wrap=True)


# --- writes --------------------------------------------------------------------------------
@app.command()
def pause(queue: QueueArg) -> None:
    """Pause a queue: workers stop taking its jobs (jobs can still be added)."""
    _admin(lambda a: a.pause_queue(queue))
    console.print(f"{queue} paused")


@app.command()
def resume(queue: QueueArg) -> None:
    """Resume a paused queue."""
    _admin(lambda a: a.resume_queue(queue))
    console.print(f"{queue} resumed")


@app.command()
def clean(
    queue: QueueArg,
    state: Annotated[str, typer.Option(help="completed, failed, delayed, waiting …")] = "completed",
    grace_ms: Annotated[int, typer.Option(help="Only jobs older than this (ms).")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many (0: all).")] = 0,
) -> None:
    """Remove jobs of one state older than --grace-ms."""
    removed = _admin(lambda a: a.clean_queue(queue, grace_ms, state, limit))  # type: ignore[arg-type]
    console.print(f"removed {len(removed)} {state} job(s) from {queue}")


@app.command()
def clear(
    queue: Annotated[str, typer.Argument(help="Queue name, or 'all'.")],
    force: Annotated[bool, typer.Option(help="Allow outside dev mode.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Obliterate a queue (or all): every job, scheduler and metric under the prefix."""
    if not yes:
        typer.confirm(f"Delete every job of {queue}?", abort=True)
    removed = _run(lambda: _with_tools(lambda t: t.clear(queue, force=force)))
    for name, count in removed.items():
        console.print(f"cleared {name}: {count} job(s)")


@app.command()
def retry(queue: QueueArg) -> None:
    """Move every failed job of a queue back to waiting."""
    count = _admin(lambda a: a.retry_failed(queue))
    console.print(f"{count} failed {queue} job(s) moved back to waiting")


@app.command("test-jobs")
def create_test_jobs(as_json: JsonFlag = False) -> None:
    """Add a realistic mix of test jobs to all three queues."""
    created = _run(lambda: _with_tools(lambda t: t.create_test_jobs()))
    if as_json:
        _print_json(created)
    else:
        for name, ids in created.items():
            console.print(f"{name}: {len(ids)} job(s) — {', '.join(ids)}")


@app.command()
def perf(
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=100_000,
                                      help="How many jobs.")] = 1000,
    queue: Annotated[str, typer.Option(help="Queue to load.")] = "analytics",
    drain_timeout: Annotated[float, typer.Option(help="Longest wait for workers (s).")] = 60,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue N jobs in bulk and time it (and the drain, when workers run)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, disable=as_json) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task("enqueueing" if phase == "enqueue" else
                                            "processing", total=total)
            bar.update(tasks[phase], completed=done)

        result = _run(lambda: _with_tools(lambda t: t.performance_test(
            jobs, queue=queue, drain_timeout_s=drain_timeout, on_progress=progress)))
    if as_json:
        _print_json(result.to_dict())
        return
    console.print(f"created {result.jobs_created} {queue} job(s) in {result.duration_ms:.0f} ms "
                  f"({result.rate:.0f} jobs/s)")
    if result.drained is None:
        console.print("no workers connected: nothing processed them")
    elif result.drained:
        console.print(f"{result.workers} worker(s) processed them in {result.drain_ms:.0f} ms "
                      f"({result.drain_rate:.0f} jobs/s)")
    else:
        console.print(f"not all processed within {drain_timeout:.0f} s")


# --- long-running processes ----------------------------------------------------------------
@app.command("dkim-records")
def dkim_records(as_json: JsonFlag = False) -> None:
    """Print the DNS TXT records that publish the configured DKIM keys' public halves."""
    from .services.dkim import DkimSigner

    settings = _settings()
    try:
        signer = DkimSigner.from_settings(settings)
    except NewsletterQueueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if signer is None:
        err_console.print("[bold red]error:[/] no DKIM key is configured (NLQ_DKIM_DOMAIN, "
                          "NLQ_DKIM_SELECTOR, NLQ_DKIM_PRIVATE_KEY or NLQ_DKIM_TENANTS)")
        raise typer.Exit(1)
    identities = ([(None, signer.default)] if signer.default else []) + \
        list(signer.tenants.items())
    if as_json:
        _print_json([{"tenant": tenant, "name": ident.dns_record()[0],
                      "value": ident.dns_record()[1]} for tenant, ident in identities])
        return
    for tenant, ident in identities:
        who = f"tenant {tenant}" if tenant is not None else "global key"
        sys.stdout.write(f"; {who}\n{ident.zone_entry()}\n")


@app.command()
def up(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    demo: Annotated[bool, typer.Option(help="Send a demo campaign at start.")] = False,
) -> None:
    """Run everything in one process: Redis (embedded if needed), the dev SMTP sink,
    the database, all workers, the API and the dashboard — until Ctrl-C or SIGTERM."""
    launch = importlib.import_module("newsletter_queue.launch")
    settings = _settings()
    _check_bind(settings, host)
    _run(lambda: launch.run_system(settings, host=host, port=port, demo=demo), settings)


@app.command()
def worker(
    queues: Annotated[str | None, typer.Option(
        help="Comma-separated queues (default all).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Jobs at once per queue.")] = None,
) -> None:
    """A production worker process for some or all queues (SIGTERM stops it gracefully)."""
    settings = _settings()
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    for name in names or []:
        try:
            settings.queue_config(name)
        except NewsletterQueueError as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None
    if concurrency is not None:
        settings = with_concurrency(settings, names, concurrency)
    launch = importlib.import_module("newsletter_queue.launch")
    _run(lambda: launch.run_worker_process(settings, names), settings)


def with_concurrency(settings: Settings, names: list[str] | None, n: int) -> Settings:
    """``settings`` with the concurrency of ``names`` (all queues if None) set to ``n``."""
    targets = names or list(settings.queues)
    queues = {q: (cfg.model_copy(update={"concurrency": n}) if q in targets else cfg)
              for q, cfg in settings.queues.items()}
    return settings.model_copy(update={"queues": queues})


@app.command()
def api(host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Serve only the API, dashboard and /metrics (no workers)."""
    from .api import serve_api

    settings = _settings()
    _check_bind(settings, host)
    _run(lambda: serve_api(settings, host=host, port=port), settings)


def _check_bind(settings: Settings, host: str) -> None:
    from .api import check_bind

    try:
        check_bind(settings, host)
    except NewsletterQueueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


app.add_typer(importlib.import_module(f"{__package__}.cli_campaigns").app, name="campaign")
app.add_typer(importlib.import_module(f"{__package__}.cli_db").app, name="db")
_suppression_cli = importlib.import_module(f"{__package__}.cli_suppressions")
app.add_typer(_suppression_cli.app, name="suppression")
app.command("erase")(_suppression_cli.erase)


def main() -> None:
    """Console-script entry point."""
    app()
