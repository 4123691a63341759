"""Reading BullMQ's job metrics (``metrics:completed`` / ``metrics:failed``).

Workers created with ``metrics_max_data_points`` pass ``maxMetricsSize`` to
``moveToFinished``, whose Lua keeps, per queue and outcome, a hash
``{prefix}:{queue}:metrics:{completed|failed}`` (``count``, ``prevTS``, ``prevCount``)
and a list ``…:data`` of per-minute counts, newest first — exactly what Node's
``Queue.getMetrics`` and Bull Board read. ``get_metrics`` reads them with the shipped
``getMetrics-2.lua`` and returns the same shape Node returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import Settings
from ..connection import AnyRedis
from .keys import QueueKeys
from .scripts import load_script, run_script

MetricsKind = Literal["completed", "failed"]
ONE_WEEK_POINTS = 7 * 24 * 60  # BullMQ's MetricsTime.ONE_WEEK (minutes)


@dataclass(frozen=True)
class Metrics:
    """Node's ``{meta: {count, prevTS, prevCount}, data, count}``, in snake_case.

    Attributes:
        count: jobs finished in this state since metrics began.
        prev_ts: when the last data point was written (ms).
        prev_count: ``count`` when the last data point was written.
        data: jobs per minute, newest first (the requested ``start..end`` slice).
        total_points: how many data points are stored in all.
    """

    count: int
    prev_ts: int
    prev_count: int
    data: list[int]
    total_points: int


def _int(value: object) -> int:
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        return 0


async def get_metrics(
    client: AnyRedis,
    settings: Settings,
    queue: str,
    kind: MetricsKind,
    start: int = 0,
    end: int = -1,
) -> Metrics:
    """Read the ``kind`` metrics of ``queue`` (data points ``start..end``, newest first)."""
    if kind not in ("completed", "failed"):
        raise ValueError("kind must be 'completed' or 'failed'")
    keys = QueueKeys(settings.key_prefix, queue)
    metrics_key = keys.metrics(kind)
    meta, data, total = await run_script(client, load_script("getMetrics"),
                                         (metrics_key, metrics_key + ":data"), (start, end))
    return Metrics(
        count=_int(meta[0]),
        prev_ts=_int(meta[1]),
        prev_count=_int(meta[2]),
        data=[_int(x) for x in data],
        total_points=_int(total),
    )
