'use strict';
/**
 * Read jobs back through Node BullMQ (Queue.getJob or Job.fromId) and report what a Node
 * consumer or dashboard would see.
 *
 * stdin: {"queue": "email", "ids": ["1", "x"], "via": "getJob" | "fromId"}
 * stdout: {"jobs": {"<id>": null | {id, name, data, opts, priority, delay, timestamp,
 *          attemptsMade, processedOn, finishedOn, returnvalue, failedReason, state}}}
 */
const { runMain } = require('./lib');

runMain(async ({ bullmq, prefix, connection, spec }) => {
  const queue = new bullmq.Queue(spec.queue, { connection, prefix });
  try {
    const jobs = {};
    for (const id of spec.ids || []) {
      const job = spec.via === 'fromId'
        ? await bullmq.Job.fromId(queue, id)
        : await queue.getJob(id);
      if (!job) {
        jobs[id] = null;
        continue;
      }
      jobs[id] = {
        id: job.id,
        name: job.name,
        data: job.data,
        opts: job.opts,
        priority: job.priority,
        delay: job.delay,
        timestamp: job.timestamp,
        attemptsMade: job.attemptsMade,
        processedOn: job.processedOn === undefined ? null : job.processedOn,
        finishedOn: job.finishedOn === undefined ? null : job.finishedOn,
        returnvalue: job.returnvalue === undefined ? null : job.returnvalue,
        failedReason: job.failedReason === undefined ? null : job.failedReason,
        state: await job.getState(),
      };
    }
    return { jobs };
  } finally {
    await queue.close();
  }
});
