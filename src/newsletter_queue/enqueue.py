"""Adding jobs through ``bullmq``: what its ``Queue`` does not do for us.

Two gaps, each worked around here and nowhere else:

- **Was the job created?** BullMQ's add script silently returns the id of an existing
  job, so ``Queue.add`` with a ``jobId`` cannot say whether this call created it.
  ``add_job`` answers exactly (a watched transaction, ``_add_once``), which makes an
  idempotent HTTP enqueue answer 201 exactly once per id.
- **Bulk adds on a cluster.** redis-py's ``ClusterPipeline`` refuses ``evalsha()``, so
  ``Queue.addBulk`` fails on a cluster client; ``add_bulk`` queues the same scripts in
  one ``MULTI`` on the queue's node instead (``_add_bulk_cluster``).
"""

from __future__ import annotations

from typing import Any

from bullmq import Job as BullJob
from bullmq import Queue
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import WatchError

from .connection import AnyRedis
from .errors import RedisUnavailableError

_ADD_ATTEMPTS = 5  # watched adds retried after a dropped connection (_add_once)


async def add_job(client: AnyRedis, queue: Queue, name: str, wire: dict[str, Any],
                  bull_opts: dict[str, Any], *, url: str) -> tuple[BullJob, bool]:
    """Add one job; return it and whether this call created it (``url`` for errors)."""
    if "jobId" not in bull_opts:
        return await queue.add(name, wire, bull_opts), True
    if isinstance(client, RedisCluster):
        # No WATCH through the cluster client: exact unless two adds of one id race,
        # when both may say created (Redis still holds one job).
        created = not await client.exists(str(queue.toKey(str(bull_opts["jobId"]))))
        return await queue.add(name, wire, bull_opts), created
    return await _add_once(client, queue, name, wire, bull_opts, url)


async def add_bulk(client: AnyRedis, queue: Queue, jobs: list[dict[str, Any]]
                   ) -> list[BullJob]:
    """``Queue.addBulk`` (``[{name, data, opts}]``), on a cluster client too."""
    if isinstance(client, RedisCluster):
        return await _add_bulk_cluster(client, queue, jobs)
    return list(await queue.addBulk(jobs))


async def _add_once(client: AnyRedis, queue: Queue, name: str, wire: dict[str, Any],
                    bull_opts: dict[str, Any], url: str) -> tuple[BullJob, bool]:
    """Add a job with a given id, telling whether this call created it.

    Watching the job key around the add (WATCH, EXISTS, MULTI, add, EXEC) makes the
    answer exact even for simultaneous calls: the one whose EXEC lands first created the
    job; for every other the key changed or already existed, so it reports
    ``created=False``.

    redis-py also raises ``WatchError`` when the connection drops inside the
    transaction, so a ``WatchError`` only means "someone else created it" once Redis
    confirms the job exists; otherwise the add is tried again (a Redis that stays
    down fails the ``EXISTS`` with a connection error, which the caller reports).
    If the drop cost only the reply of an EXEC that ran, the job exists and this call
    says ``created=False`` for a job it did create: stored once either way.
    """
    job_id = str(bull_opts["jobId"])
    key = str(queue.toKey(job_id))
    for _ in range(_ADD_ATTEMPTS):
        job = BullJob(queue, name, wire, {**queue.jobsOpts, **bull_opts})
        async with client.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                if await pipe.exists(key):
                    job.id = job_id
                    return job, False
                pipe.multi()  # type: ignore[no-untyped-call]
                await queue.backend.scripts.addJob(job, pipe)
                (result,) = await pipe.execute()
            except WatchError:
                if await client.exists(key):
                    job.id = job_id
                    return job, False
                continue
        if isinstance(result, int) and result < 0:
            raise queue.backend.scripts.finishedErrors(
                {"code": result, "parentKey": None, "command": "addJob"})
        job.id = str(result)
        return job, True
    raise RedisUnavailableError(url, f"could not add job {job_id}: the connection "
                                     f"dropped {_ADD_ATTEMPTS} times")


class _ClusterScriptQueue:
    """What ``bullmq``'s script objects need of a pipeline, on a cluster transaction.

    redis-py's ``ClusterPipeline`` refuses ``evalsha()`` (it cannot know in general
    that a script's keys share a slot), but every key of one of our queues carries the
    prefix's hash tag, so the whole bulk add is one slot and ``MULTI`` works: the
    commands are queued through ``execute_command`` instead.
    """

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        self._pipe.execute_command("EVALSHA", sha, numkeys, *args)
        return self


async def _add_bulk_cluster(
    client: RedisCluster, queue: Queue, jobs: list[dict[str, Any]]
) -> list[BullJob]:
    """``Queue.addBulk`` for a cluster client: one ``MULTI``/``EXEC`` on the queue's node."""
    instances = []
    for spec in jobs:
        opts = {**queue.jobsOpts, **(spec.get("opts") or {})}
        instances.append(BullJob(queue=queue, name=spec["name"], data=spec["data"],
                                 opts=opts, job_id=opts.get("jobId")))
    scripts = queue.backend.scripts
    # EVALSHA in a transaction cannot fall back to EVAL: load the scripts first
    # (SCRIPT LOAD goes to every primary).
    for name in ("addStandardJob", "addPrioritizedJob", "addDelayedJob"):
        await client.script_load(scripts.commands[name].script)
    async with client.pipeline(transaction=True) as pipe:
        proxy = _ClusterScriptQueue(pipe)
        for job in instances:
            await scripts.addJob(job, proxy)
        ids = await pipe.execute()
    for job, job_id in zip(instances, ids, strict=True):
        if isinstance(job_id, int) and job_id < 0:
            raise scripts.finishedErrors({"code": job_id, "parentKey": job.parentKey,
                                          "command": "addJob"})
        job.id = str(job_id)
    return instances
