"""``newsletter-queue db …``: the records database's schema (``services.store.migrate``).

``upgrade`` brings the database to this release's revision — what every process does
at start unless ``NLQ_DB_AUTO_UPGRADE=false`` — and prints from where to where;
``current`` prints the revision and whether it is this release's head (exit 0 either
way; ``--json`` gives ``at_head``). The database is ``DATABASE_URL``, else the SQLite file
in the state dir, shown with its password masked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from .cli import JsonFlag, _print_json, _run, _settings, console
from .services.store import Store

app = typer.Typer(help="The records database's schema: upgrade it to this release, show "
                       "its revision.", no_args_is_help=True)
T = TypeVar("T")
SchemaOpt = Annotated[str | None, typer.Option(
    help="PostgreSQL schema of the tables (default: the connection's search_path).")]


def _with_store(schema: str | None, fn: Callable[[Store], Awaitable[T]]) -> tuple[str, T]:
    """``fn`` on a store of its own; returns the store's (masked) URL with the result."""
    async def go() -> tuple[str, T]:
        store = Store.from_settings(_settings(), schema=schema)
        try:
            return store.url, await fn(store)
        finally:
            await store.close()

    return _run(go)


@app.command()
def upgrade(schema: SchemaOpt = None, as_json: JsonFlag = False) -> None:
    """Upgrade the records database to this release's schema (whatever
    NLQ_DB_AUTO_UPGRADE says); a database of release 0.1.0 is checked first."""
    url, done = _with_store(schema, lambda s: s.upgrade())
    if as_json:
        _print_json(done.to_dict())
    elif done.changed:
        console.print(f"{url}: upgraded {done.before.describe()} → revision {done.head}",
                      soft_wrap=True, markup=False)
    else:
        console.print(f"{url}: already at revision {done.head} (head)", soft_wrap=True,
                      markup=False)


@app.command()
def current(schema: SchemaOpt = None, as_json: JsonFlag = False) -> None:
    """The records database's revision and whether it is this release's head."""
    url, status = _with_store(schema, lambda s: s.schema_status())
    if as_json:
        _print_json(status.to_dict())
    elif status.at_head:
        console.print(f"{url}: revision {status.head} (head)", soft_wrap=True,
                      markup=False)
    else:
        console.print(f"{url}: {status.describe()}, not at head (revision {status.head}): "
                      "run `newsletter-queue db upgrade`", soft_wrap=True, markup=False)
