"""``newsletter-queue campaign …``: save, send, status, pause, resume, cancel, list and
recipient — each one call of ``manager.campaigns`` (``campaigns.manage.Campaigns``).

``send`` reads a CSV or NDJSON file (streamed: ``rows_from_csv`` / ``rows_from_ndjson``);
bad rows are printed with their row numbers and the command exits 1 with nothing sent
(unless ``--partial``). ``--follow`` (``send``, ``status``) shows a live progress bar,
refreshed about once a second (``Campaigns.follow``), until the campaign is completed
or cancelled and its stats are computed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .campaigns import CampaignStatus, RecipientsError
from .campaigns.recipients import rows_from_csv, rows_from_ndjson
from .cli import JsonFlag, _print_json, _run, _settings, console, err_console
from .manager import QueueManager

app = typer.Typer(help="Save, send, watch, pause, resume and cancel a tenant's campaigns.",
                  no_args_is_help=True)
T = TypeVar("T")
TenantArg = Annotated[str, typer.Argument(help="Tenant id.")]
CampaignArg = Annotated[str, typer.Argument(help="Campaign id.")]
FollowFlag = Annotated[bool, typer.Option(
    "--follow", help="Show a live progress bar until the campaign ends.")]


def _campaigns(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run one ``Campaigns`` operation on a manager of its own; bad rows are listed."""
    async def go() -> T:
        async with QueueManager(_settings()) as manager:
            try:
                return await fn(manager.campaigns)
            except RecipientsError as exc:
                _bad_rows(exc)
                raise typer.Exit(1) from None

    return _run(go)


def _bad_rows(exc: RecipientsError) -> None:
    """Every bad row with its number (the first 100), then that nothing was sent."""
    err_console.print(f"[bold red]error:[/] {len(exc.rows)} bad row(s)"
                      f"{' (and more)' if exc.truncated else ''}; nothing was sent "
                      "(--partial sends the good ones):")
    for row in exc.rows:
        err_console.print(f"  {row}", soft_wrap=True, markup=False)


def _print_status(status: CampaignStatus) -> None:
    table = Table(title=f"{status.campaign_id} ({status.tenant_id}): {status.state}")
    for column in ("total", "sent", "bounced", "failed", "suppressed", "pending", "batches",
                   "rate/s", "eta s"):
        table.add_column(column, justify="right")
    table.add_row(*(str(v) for v in (
        status.total, status.sent, status.bounced, status.failed, status.suppressed,
        status.pending,
        f"{status.batches_done}/{status.batches_total}", status.rate,
        status.eta_seconds if status.eta_seconds is not None else "-")))
    console.print(table)
    if status.stats is not None:
        s = status.stats
        console.print(f"opens {s.unique_opens} ({s.open_rate:.1%}), clicks "
                      f"{s.unique_clicks} ({s.click_rate:.1%}), unsubscribes "
                      f"{s.unsubscribes}")


async def _follow(campaigns: Any, tenant: str, campaign: str) -> CampaignStatus:
    """A progress bar over ``campaigns.follow`` until the campaign is finished with its
    stats."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                  console=err_console) as bar:
        task = bar.add_task(campaign, total=None, detail="")
        status: CampaignStatus
        async for status in campaigns.follow(tenant, campaign):
            eta = f", eta {status.eta_seconds:.0f} s" if status.eta_seconds else ""
            bar.update(task, total=status.total or None,
                       completed=status.sent + status.bounced + status.failed,
                       description=f"{campaign} {status.state}",
                       detail=f"{status.rate:g}/s{eta}")
        return status


@app.command()
def save(tenant: TenantArg, campaign: CampaignArg,
         subject: Annotated[str, typer.Option(help="Subject template.")],
         html_file: Annotated[Path | None, typer.Option(
             exists=True, dir_okay=False, help="HTML body template file.")] = None,
         text_file: Annotated[Path | None, typer.Option(
             exists=True, dir_okay=False, help="Plain-text body template file.")] = None,
         from_addr: Annotated[str | None, typer.Option("--from", help="From address.")] = None,
         reply_to: Annotated[str | None, typer.Option(help="Reply-To address.")] = None,
         ) -> None:
    """Save a draft's content (templates are checked: an error names field and line)."""
    html = html_file.read_text(encoding="utf-8") if html_file else None
    text = text_file.read_text(encoding="utf-8") if text_file else None
    _campaigns(lambda c: c.save(tenant, campaign, subject=subject, html=html, text=text,
                                from_addr=from_addr, reply_to=reply_to))
    console.print(f"saved {campaign} ({tenant}) as a draft")


@app.command()
def send(tenant: TenantArg, campaign: CampaignArg,
         file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                              help="Recipients: CSV or NDJSON.")],
         fmt: Annotated[str | None, typer.Option(
             "--format", help="csv or ndjson (default: from the extension).")] = None,
         send_at: Annotated[datetime | None, typer.Option(
             help="Send at this instant (ISO 8601; naive is UTC).",
             formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
                      "%Y-%m-%d %H:%M:%S"])] = None,
         partial: Annotated[bool, typer.Option(help="Send the good rows despite bad ones.")
                            ] = False,
         batch_size: Annotated[int | None, typer.Option(min=1, help="Recipients per batch.")
                               ] = None,
         follow: FollowFlag = False, as_json: JsonFlag = False) -> None:
    """Send a saved draft to the recipients of a file; bad rows exit 1, nothing sent."""
    kind = fmt or ("ndjson" if file.suffix.lower() in (".ndjson", ".jsonl") else "csv")
    if kind not in ("csv", "ndjson"):
        err_console.print("[bold red]error:[/] --format must be csv or ndjson")
        raise typer.Exit(2)
    rows = rows_from_csv(file) if kind == "csv" else rows_from_ndjson(file)

    async def go(c: Any) -> Any:
        result = await c.send(tenant, campaign, rows, send_at=send_at, partial=partial,
                              batch_size=batch_size)
        return result, (await _follow(c, tenant, campaign) if follow else None)

    result, status = _campaigns(go)
    if as_json:
        _print_json({**result.to_dict(), **({"status": status.to_dict()} if status else {})})
        return
    if not result.created:
        console.print(f"{campaign} was sent before ({result.state}): nothing added")
    else:
        console.print(f"{campaign}: {result.recipients} recipient(s) in {result.batches} "
                      f"batch(es), {result.state}; {result.duplicates} duplicate(s) "
                      f"collapsed, {len(result.skipped)} bad row(s) skipped")
    for row in result.skipped:
        err_console.print(f"  skipped {row}", soft_wrap=True, markup=False)
    if status is not None:
        _print_status(status)


@app.command()
def status(tenant: TenantArg, campaign: CampaignArg, follow: FollowFlag = False,
           as_json: JsonFlag = False) -> None:
    """A campaign's state and numbers (stats once complete)."""
    async def go(c: Any) -> CampaignStatus:
        return await (_follow(c, tenant, campaign) if follow else c.status(tenant, campaign))

    found = _campaigns(go)
    if as_json:
        _print_json(found.to_dict())
    else:
        _print_status(found)


def _control(action: str) -> Callable[[str, str], None]:
    def command(tenant: TenantArg, campaign: CampaignArg) -> None:
        found = _campaigns(lambda c: getattr(c, action)(tenant, campaign))
        console.print(f"{campaign} ({tenant}): {found.state}")
    command.__doc__ = {"pause": "Pause a scheduled or sending campaign.",
                       "resume": "Resume a paused campaign.",
                       "cancel": "Cancel a campaign: nothing more is sent."}[action]
    return command


for _action in ("pause", "resume", "cancel"):
    app.command(_action)(_control(_action))


@app.command("list")
def list_campaigns(tenant: TenantArg,
                   page: Annotated[int, typer.Option(min=1, help="Page number.")] = 1,
                   page_size: Annotated[int, typer.Option(min=1, max=100)] = 20,
                   as_json: JsonFlag = False) -> None:
    """The tenant's campaigns, newest first."""
    found = _campaigns(lambda c: c.list(tenant, page, page_size))
    if as_json:
        _print_json({"tenant": tenant, **found.to_dict()})
        return
    table = Table(title=f"campaigns of {tenant} (page {found.page}, {found.total} in all)")
    for column in ("campaign", "subject", "state", "total", "sent", "bounced", "failed"):
        table.add_column(column)
    for item in found.items:
        s = item.status
        table.add_row(item.campaign_id, item.subject, s.state, str(s.total), str(s.sent),
                      str(s.bounced), str(s.failed))
    console.print(table)


@app.command()
def recipient(tenant: TenantArg, campaign: CampaignArg,
              email: Annotated[str, typer.Argument(help="The address.")],
              as_json: JsonFlag = False) -> None:
    """The delivery of one address in a campaign (exit 1 if none was recorded)."""
    found = _campaigns(lambda c: c.recipient(tenant, campaign, email))
    if found is None:
        err_console.print(f"no delivery recorded for {email} in {campaign}", markup=False)
        raise typer.Exit(1)
    if as_json:
        _print_json(found.to_dict())
        return
    for key, value in found.to_dict().items():
        console.print(f"{key}: {value}", markup=False, soft_wrap=True)
