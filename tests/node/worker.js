'use strict';
/**
 * Run a Node BullMQ Worker until `count` jobs have completed, then close it.
 *
 * stdin: {"queue": "email", "count": 3, "concurrency": 1, "timeoutMs": 30000,
 *         "failFirstAttempt": false | true | ["<job id or name>", ...]}
 * The processor returns {echo: job.data, by: "node", name, attemptsMade} where
 * attemptsMade is the value seen when the attempt started. With failFirstAttempt (all
 * jobs, or those whose id or name is listed) an attempt with attemptsMade == 0 throws,
 * to exercise retries and backoff.
 * stdout: {"completed": n, "failedAttempts": n, "order": [ids in start order],
 *          "jobs": {"<id>": {name, attemptsMade, returnvalue}}, "timedOut": false}
 * Exits with status 2 (after printing) when the timeout passes first.
 */
const { log, runMain } = require('./lib');

function shouldFail(spec, job) {
  const rule = spec.failFirstAttempt;
  if (!rule || job.attemptsMade > 0) return false;
  if (rule === true) return true;
  return Array.isArray(rule) && (rule.includes(job.id) || rule.includes(job.name));
}

runMain(async ({ bullmq, prefix, connection, spec }) => {
  const count = Number(spec.count || 1);
  const order = [];
  const jobs = {};
  let failedAttempts = 0;
  let completed = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });

  const worker = new bullmq.Worker(spec.queue, async (job) => {
    order.push(job.id);
    if (shouldFail(spec, job)) {
      throw new Error(`node harness: planned failure of attempt 1 of job ${job.id}`);
    }
    return { echo: job.data, by: 'node', name: job.name, attemptsMade: job.attemptsMade };
  }, { connection, prefix, concurrency: Number(spec.concurrency || 1) });

  worker.on('completed', (job, returnvalue) => {
    jobs[job.id] = { name: job.name, attemptsMade: job.attemptsMade, returnvalue };
    completed += 1;
    if (completed >= count) done(false);
  });
  worker.on('failed', (job, err) => {
    failedAttempts += 1;
    log(`attempt of job ${job && job.id} failed: ${err.message}`);
  });
  worker.on('error', (err) => log(`worker error: ${err.message}`));

  const timer = setTimeout(() => done(true), Number(spec.timeoutMs || 30000));
  const timedOut = await finished;
  clearTimeout(timer);
  await worker.close(timedOut);
  return { completed, failedAttempts, order, jobs, timedOut, exitCode: timedOut ? 2 : 0 };
});
