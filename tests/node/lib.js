'use strict';
/**
 * Shared plumbing of the Node BullMQ harness (tests and benchmarks only; the product
 * never runs Node).
 *
 * Every script is called as `node <script> <redisUrl> <prefix>` with a JSON spec on
 * stdin, and prints exactly one JSON object as its last stdout line. Diagnostics go to
 * stderr. Redis is reached only at the URL given on the command line: the URL is turned
 * into explicit ioredis options, so no environment variable or default host can
 * redirect a script elsewhere.
 *
 * `bullmq` is loaded from NLQ_NODE_MODULES (the directory holding the node_modules that
 * tests/support/nodeharness.py installed from package-lock.json) and falls back to this
 * directory, so `npm ci` run by hand in tests/node works too.
 */

const path = require('path');

function loadBullmq() {
  const bases = [process.env.NLQ_NODE_MODULES, __dirname].filter(Boolean);
  const resolved = require.resolve('bullmq', { paths: bases });
  return require(resolved);
}

/** ioredis options for a redis://, rediss:// or unix:// URL. */
function connectionOptions(url) {
  const u = new URL(url);
  const opts = {
    // Workers require it; harmless for queues.
    maxRetriesPerRequest: null,
    // Fail instead of reconnecting forever to a dead server: scripts must end.
    retryStrategy: (times) => (times > 20 ? null : Math.min(times * 100, 1000)),
  };
  if (u.protocol === 'unix:') {
    opts.path = decodeURIComponent(u.pathname);
  } else if (u.protocol === 'redis:' || u.protocol === 'rediss:') {
    opts.host = u.hostname.replace(/^\[|\]$/g, '');
    opts.port = u.port ? Number(u.port) : 6379;
    const db = u.pathname.replace(/^\//, '');
    if (db) opts.db = Number(db);
    if (u.protocol === 'rediss:') opts.tls = {};
  } else {
    throw new Error(`unsupported Redis URL scheme ${u.protocol}`);
  }
  if (u.username) opts.username = decodeURIComponent(u.username);
  if (u.password) opts.password = decodeURIComponent(u.password);
  const db = u.searchParams.get('db');
  if (db) opts.db = Number(db);
  return opts;
}

function readStdin() {
  return new Promise((resolve, reject) => {
    let buf = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => { buf += chunk; });
    process.stdin.on('end', () => {
      try {
        resolve(buf.trim() ? JSON.parse(buf) : {});
      } catch (err) {
        reject(new Error(`stdin is not JSON: ${err.message}`));
      }
    });
    process.stdin.on('error', reject);
  });
}

function log(...parts) {
  process.stderr.write(`[${path.basename(process.argv[1])}] ${parts.join(' ')}\n`);
}

/**
 * Run `main(ctx)` where ctx = {bullmq, url, prefix, connection, spec}; print its result
 * as one JSON line. A thrown error is printed to stderr and exits with status 1; a
 * result carrying `exitCode` exits with that status after printing.
 */
function runMain(main) {
  const [url, prefix] = process.argv.slice(2);
  if (!url || !prefix) {
    process.stderr.write(`usage: node ${path.basename(process.argv[1])} <redisUrl> <prefix> < spec.json\n`);
    process.exit(64);
  }
  (async () => {
    const spec = await readStdin();
    const bullmq = loadBullmq();
    const connection = connectionOptions(url);
    const result = await main({ bullmq, url, prefix, connection, spec });
    const exitCode = result && result.exitCode ? result.exitCode : 0;
    if (result) delete result.exitCode;
    process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(exitCode));
  })().catch((err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  });
}

module.exports = { connectionOptions, loadBullmq, log, runMain };
