"""``newsletter-queue suppression …`` and ``erase``: the tenant's suppression list from a
shell — each one call of ``manager.suppressions`` (``suppressions.Suppressions``).

``import`` reads a CSV or NDJSON file with an ``email`` column (streamed); rows that are
not addresses are printed with their numbers and the others are listed (listing the good
ones is the safe side). ``erase`` forgets an address: its deliveries and events are
deleted and only a hashed suppression entry is kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from .campaigns.recipients import rows_from_csv, rows_from_ndjson
from .cli import JsonFlag, _print_json, _run, _settings, console, err_console
from .manager import QueueManager

app = typer.Typer(help="The addresses a tenant's campaigns never mail again.",
                  no_args_is_help=True)
T = TypeVar("T")
TenantArg = Annotated[str, typer.Argument(help="Tenant id.")]
EmailArg = Annotated[str, typer.Argument(help="The address.")]
ReasonOpt = Annotated[str, typer.Option(
    help="unsubscribed, hard-bounce, complaint or manual.")]


def _suppressions(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run one ``Suppressions`` operation on a manager of its own."""
    async def go() -> T:
        async with QueueManager(_settings()) as manager:
            return await fn(manager.suppressions)

    return _run(go)


@app.command()
def add(tenant: TenantArg, emails: Annotated[list[str], typer.Argument(help="Addresses.")],
        reason: ReasonOpt = "manual") -> None:
    """List addresses: the tenant's campaigns never mail them again."""
    added = _suppressions(lambda s: s.add(tenant, emails, reason=reason))
    console.print(f"{added} address(es) added, {len(emails) - added} already listed")


@app.command("import")
def import_file(tenant: TenantArg,
                file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                     help="CSV or NDJSON, an email column.")],
                reason: ReasonOpt = "manual", as_json: JsonFlag = False) -> None:
    """List every address of a file (bad rows are printed and skipped)."""
    ndjson = file.suffix.lower() in (".ndjson", ".jsonl")
    rows = rows_from_ndjson(file) if ndjson else rows_from_csv(file)
    result = _suppressions(lambda s: s.import_rows(tenant, rows, reason=reason))
    if as_json:
        _print_json(result.to_dict())
        return
    console.print(f"{result.added} added, {result.already} already listed, "
                  f"{result.duplicates} duplicate(s), {len(result.bad_rows)} bad row(s)")
    for row in result.bad_rows:
        err_console.print(f"  skipped {row}", soft_wrap=True, markup=False)


@app.command()
def remove(tenant: TenantArg, email: EmailArg) -> None:
    """Take an address off the list (exit 1 if it was not on it)."""
    if not _suppressions(lambda s: s.remove(tenant, email)):
        err_console.print(f"{email} is not on the list of {tenant}", markup=False)
        raise typer.Exit(1)
    console.print(f"{email} removed", markup=False)


@app.command("list")
def list_entries(tenant: TenantArg,
                 reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
                 campaign: Annotated[str | None, typer.Option(help="Only from this one.")
                                     ] = None,
                 page: Annotated[int, typer.Option(min=1)] = 1,
                 page_size: Annotated[int, typer.Option(min=1, max=500)] = 50,
                 as_json: JsonFlag = False) -> None:
    """The tenant's suppression list, newest first."""
    found = _suppressions(lambda s: s.list(tenant, reason=reason, campaign_id=campaign,
                                           page=page, page_size=page_size))
    if as_json:
        _print_json({"tenant": tenant, **found.to_dict()})
        return
    table = Table(title=f"suppressed for {tenant} (page {found.page}, {found.total} in all)")
    for column in ("address", "reason", "campaign", "since"):
        table.add_column(column)
    for entry in found.items:
        table.add_row(entry.email or f"(erased) {entry.email_hash[:12]}…", entry.reason,
                      entry.campaign_id or "-",
                      entry.created_at.isoformat(timespec="seconds") if entry.created_at
                      else "-")
    console.print(table)


def erase(tenant: TenantArg, email: EmailArg, as_json: JsonFlag = False) -> None:
    """Forget an address: delete its deliveries and events, keep only its hash on the
    suppression list so it is never mailed again."""
    result = _suppressions(lambda s: s.erase(tenant, email))
    if as_json:
        _print_json(result.to_dict())
        return
    console.print(f"erased {email}: {result.deliveries} delivery(ies) and {result.events} "
                  "event(s) deleted; kept as a hash on the suppression list", markup=False)
