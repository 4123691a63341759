'use strict';
/**
 * Add jobs with Node BullMQ's Queue.add, as a Node producer of the platform would.
 *
 * stdin: {"queue": "email", "jobs": [{"name": "send-batch", "data": {...},
 *          "opts": {"delay": 500, "priority": 3, "attempts": 2,
 *                   "backoff": {"type": "fixed", "delay": 50}, "jobId": "x"}}]}
 * stdout: {"ids": ["1", "x", ...]} in the order of `jobs`.
 */
const { runMain } = require('./lib');

runMain(async ({ bullmq, prefix, connection, spec }) => {
  const queue = new bullmq.Queue(spec.queue, { connection, prefix });
  try {
    const ids = [];
    // One by one on purpose: Queue.add is the call producers use.
    for (const job of spec.jobs || []) {
      const added = await queue.add(job.name, job.data, job.opts || {});
      ids.push(added.id);
    }
    return { ids };
  } finally {
    await queue.close();
  }
});
