"""Delivery rows written behind the sends, many chunks per store transaction.

The email processor ends each chunk with its delivery rows (who was sent, bounced,
failed or suppressed, with the server's answer). Written one transaction per chunk, in
line, the store took about a third of a worker process's time at ~1,000 emails/s; written
once per batch job, the rows lagged the campaign's counters by up to a whole batch. So a
chunk hands its rows to ``RowWriter`` and goes on: one writer task per process writes
whatever chunks have handed in while its previous write ran (group commit, no timer),
and the job waits for its own rows before it counts as finished. The rows of a chunk
are in the store a write or two after its counters are in Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .email_types import Delivery, DeliveryRecorder

log = logging.getLogger(__name__)


class RowWriter:
    """Queues delivery rows and writes them in the background (one per worker process)."""

    def __init__(self) -> None:
        # recorder → (rows, rows to write only where missing, the futures they answer)
        self._next: dict[int, tuple[DeliveryRecorder, list[Delivery], list[Delivery],
                                    list[asyncio.Future[None]]]] = {}
        self._writer: asyncio.Task[None] | None = None

    def add(self, recorder: DeliveryRecorder, rows: Sequence[Delivery],
            missing: Sequence[Delivery] = ()) -> asyncio.Future[None]:
        """Queue ``rows`` (upserted) and ``missing`` (written only where no row exists:
        what an attempt killed between sending and recording left out). The future is
        done when they are in the store, or has the store's error."""
        done = asyncio.get_running_loop().create_future()
        entry = self._next.setdefault(id(recorder), (recorder, [], [], []))
        entry[1].extend(rows)
        entry[2].extend(missing)
        entry[3].append(done)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="nlq-delivery-rows")
        return done

    async def _write_all(self) -> None:
        while self._next:
            batch, self._next = self._next, {}
            for recorder, rows, missing, waiting in batch.values():
                error: BaseException | None = None
                try:
                    if rows:
                        await recorder.record(rows)
                    if missing:
                        await recorder.record(missing, only_missing=True)
                except asyncio.CancelledError:
                    for future in waiting:
                        future.cancel()
                    raise
                except Exception as exc:  # handed to every chunk it carried
                    error = exc
                for future in waiting:
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)

    @staticmethod
    async def wait(writes: list[asyncio.Future[None]], *, failing: bool) -> None:
        """Wait for a job's writes (and forget them). The first error is raised, unless
        the job is ``failing`` already: then it is logged, not raised over that error —
        the batch's next run writes the rows, as it finds the recipients in the ledger."""
        pending, writes[:] = list(writes), []
        if not pending:
            return
        results = await asyncio.gather(*pending, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if not errors:
            return
        error = errors[0]
        if not failing:
            raise error
        # One line, no traceback: the batch's own error says what went wrong. A Redis
        # outage (the recorder also counts the rows in Redis) is reported once by the
        # worker's health check, not once per batch here.
        outage = isinstance(error, RedisConnectionError | RedisTimeoutError | OSError)
        log.log(logging.DEBUG if outage else logging.WARNING,
                "could not record the delivery rows of a failing batch (%s: %s); its "
                "next run records them", type(error).__name__, error)
