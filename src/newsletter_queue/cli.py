"""The ``newsletter-queue`` / ``nlq`` command line (Typer + Rich).

Every command builds ``Settings`` from the environment, so ``REDIS_URL`` and the other
variables work the same here as in the library. Read commands accept ``--json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .config import load_settings
from .errors import NewsletterQueueError
from .manager import QueueManager
from .records import QueueStats

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


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; turn our errors into a one-line message and exit code 1."""
    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except NewsletterQueueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


def stats_table(stats: dict[str, QueueStats]) -> Table:
    table = Table(title="Queues")
    table.add_column("queue")
    for column in ("waiting", "prioritized", "active", "delayed", "completed", "failed"):
        table.add_column(column, justify="right")
    table.add_column("paused")
    for name, s in stats.items():
        table.add_row(name, str(s.waiting), str(s.prioritized), str(s.active), str(s.delayed),
                      str(s.completed), str(s.failed), "yes" if s.is_paused else "no")
    return table


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@app.command()
def stats(as_json: JsonFlag = False) -> None:
    """Job counts by state for every queue."""

    async def go() -> dict[str, QueueStats]:
        async with QueueManager(load_settings()) as manager:
            return await manager.get_all_queue_stats()

    result = _run(go)
    if as_json:
        _print_json({k: v.to_dict() for k, v in result.items()})
    else:
        console.print(stats_table(result))


@app.command()
def health(as_json: JsonFlag = False) -> None:
    """Check Redis and the queues; exit code 0 when healthy, 2 when not."""

    async def go() -> Any:
        async with QueueManager(load_settings()) as manager:
            return await manager.health_check()

    result = _run(go)
    if as_json:
        _print_json(result.to_dict())
    else:
        state = "[green]healthy[/]" if result.healthy else f"[red]unhealthy[/] ({result.error})"
        console.print(f"Redis {result.redis_url} {result.redis_version or ''}: {state}")
        if result.queues:
            console.print(stats_table(result.queues))
    raise typer.Exit(0 if result.healthy else 2)


@app.command()
def up(
    interval: Annotated[float, typer.Option(help="Seconds between stats refreshes.")] = 2.0,
) -> None:
    """Run the system on the embedded defaults until Ctrl-C or SIGTERM.

    Starts Redis (a private embedded server when none is configured or running) and
    shows queue stats.
    """

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with QueueManager(load_settings()) as manager:
            console.print(f"[bold]newsletter-queue[/] is up — Redis at {manager.url}")
            console.print("Press Ctrl-C to stop.")
            while not stop.is_set():
                console.print(stats_table(await manager.get_all_queue_stats()))
                sys.stdout.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
        console.print("stopped.")

    _run(go)


def main() -> None:
    """Console-script entry point."""
    app()
