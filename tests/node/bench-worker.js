'use strict';
/**
 * Benchmark mode: a Node BullMQ Worker with a no-op processor at concurrency C, stopped
 * after `count` completed jobs (the jobs are enqueued beforehand by the caller).
 *
 * The clock starts just before the Worker is constructed and stops at the `count`-th
 * `completed` event, so Node's own start-up is not measured (as for the Python workers,
 * whose interpreter start-up is not measured either).
 *
 * stdin: {"queue": "bench", "count": 20000, "concurrency": 10, "timeoutMs": 120000}
 * stdout: {"jobs": n, "concurrency": c, "completed": n, "seconds": s, "jobsPerSec": r,
 *          "timedOut": false}
 */
const { runMain } = require('./lib');

runMain(async ({ bullmq, prefix, connection, spec }) => {
  const count = Number(spec.count);
  const concurrency = Number(spec.concurrency || 1);
  let completed = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });

  const started = process.hrtime.bigint();
  const worker = new bullmq.Worker(spec.queue, async () => null, { connection, prefix, concurrency });
  worker.on('completed', () => {
    completed += 1;
    if (completed === count) done(false);
  });
  worker.on('error', (err) => process.stderr.write(`worker error: ${err.message}\n`));
  const timer = setTimeout(() => done(true), Number(spec.timeoutMs || 120000));
  const timedOut = await finished;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  clearTimeout(timer);
  await worker.close(timedOut);
  return {
    jobs: count,
    concurrency,
    completed,
    seconds,
    jobsPerSec: timedOut ? null : count / seconds,
    timedOut,
    exitCode: timedOut ? 2 : 0,
  };
});
