// A small web app instrumented the way Node services usually are: Express with
// express-prom-bundle's middleware on prom-client (tests/support/realapps.py: NodeApp).
//
//   node app.js --port P [--release ID] [--settings FILE] [--exit-with-parent] [--default-metrics]
//
// The middleware as express-prom-bundle's README shows it, with the labels the pack reads:
// `promBundle({includeMethod: true, includePath: true})` (includeStatusCode is on by default),
// its default metric name and buckets. It answers /metrics itself (not counted) and exports
//
//   http_request_duration_seconds{status_code, method, path}   a histogram, a series on the
//                                                              first request with those labels
//   up 1                                                       its own gauge
//
// --default-metrics adds `promClient: {collectDefaultMetrics: {}}` (the README's config
// example): prom-client's process and nodejs_* metrics, nodejs_version_info among them.
//
// Served (counted): GET / (the work: sleeps latency_s, answers 200, or 500 for error_ratio
// of requests, spread evenly: 40% is exactly 2 in every 5). Not counted (excludeRoutes):
// GET /health (health_status), GET /-/control (the settings as JSON; POST: a JSON object of
// settings to change), POST /-/crash (exits with status 3 after answering).
//
// Settings as tests/support/lazyapp.py's (the JSON of --settings FILE, read at start and on
// SIGHUP, or POST /-/control): error_ratio, latency_s, rps, traffic_url, warmup_s,
// warmup_error_ratio, warmup_latency_s, crash_after_s, health_status.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const { parseArgs } = require('node:util');
const express = require('express');
const promBundle = require('express-prom-bundle');

const CRASH_EXIT_CODE = 3;
const DEFAULTS = {
  error_ratio: 0, latency_s: 0.002, rps: 0, traffic_url: null, warmup_s: 0,
  warmup_error_ratio: null, warmup_latency_s: null, crash_after_s: null, health_status: 200,
};

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    release: { type: 'string', default: 'r1' },
    settings: { type: 'string' },
    'exit-with-parent': { type: 'boolean', default: false },
    'default-metrics': { type: 'boolean', default: false },
  },
});
if (!args.port) {
  console.error('--port is required');
  process.exit(2);
}
const port = Number(args.port);
const started = process.hrtime.bigint();
const uptimeS = () => Number(process.hrtime.bigint() - started) / 1e9;

let release = args.release;
const settings = { ...DEFAULTS };
let served = 0; // requests of `/`, for the even spread of errors
let errors = 0;

function change(changes) {
  if (changes === null || typeof changes !== 'object' || Array.isArray(changes)) {
    throw new Error('settings must be a JSON object');
  }
  const unknown = Object.keys(changes).filter((k) => !(k in DEFAULTS) && k !== 'release').sort();
  if (unknown.length) {
    throw new Error(`unknown settings: ${unknown.join(', ')}`);
  }
  for (const [k, v] of Object.entries(changes)) {
    if (k === 'release') release = v;
    else settings[k] = v;
  }
  return snapshot();
}

function snapshot() {
  return { release, ...settings, pid: process.pid };
}

function reload() {
  if (args.settings) change(JSON.parse(fs.readFileSync(args.settings, 'utf8')));
}

function nowSetting(name) {
  const warm = settings[`warmup_${name}`];
  if (warm !== null && warm !== undefined && uptimeS() < Number(settings.warmup_s || 0)) return warm;
  return settings[name];
}

function work() {
  const ratio = Number(nowSetting('error_ratio'));
  const latency = Number(nowSetting('latency_s'));
  served += 1;
  const fail = errors < Math.floor(served * ratio + 1e-9);
  if (fail) errors += 1;
  return [fail ? 500 : 200, latency];
}

reload();
if (settings.crash_after_s !== null && settings.crash_after_s !== undefined) {
  if (Number(settings.crash_after_s) <= 0) {
    console.error(`release ${release} cannot start (crash_after_s: ${settings.crash_after_s})`);
    process.exit(CRASH_EXIT_CODE);
  }
  setTimeout(() => process.exit(CRASH_EXIT_CODE), Number(settings.crash_after_s) * 1000);
}

const app = express();
app.use(promBundle({
  includeMethod: true,
  includePath: true,
  excludeRoutes: ['/health', '/-/control', '/-/crash'],
  promClient: args['default-metrics'] ? { collectDefaultMetrics: {} } : {},
}));

app.get('/', (req, res) => {
  const [status, latency] = work();
  setTimeout(() => res.status(status).type('text/plain').send(`${release}\n`), latency * 1000);
});
app.get('/health', (req, res) => {
  res.status(Number(settings.health_status)).type('text/plain').send('ok\n');
});
app.get('/-/control', (req, res) => res.json(snapshot()));
app.post('/-/control', express.text({ type: '*/*' }), (req, res) => {
  try {
    res.json(change(JSON.parse(typeof req.body === 'string' && req.body ? req.body : '{}')));
  } catch (err) {
    res.status(400).type('text/plain').send(`${err.message}\n`);
  }
});
app.post('/-/crash', (req, res) => {
  res.type('text/plain').end('crashing\n', () => process.exit(CRASH_EXIT_CODE));
});

// The app's own clients: `rps` GETs a second to traffic_url, paced by a schedule; rps is read
// again after each sleep, so that a request scheduled before a change to 0 is not sent.
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const agent = new http.Agent({ keepAlive: true });

async function generateTraffic() {
  let nextAt = performance.now();
  for (;;) {
    const rps = Number(settings.rps || 0);
    if (rps <= 0) {
      await sleep(100);
      nextAt = performance.now();
      continue;
    }
    nextAt += 1000 / rps;
    const delay = nextAt - performance.now();
    if (delay > 0) await sleep(delay);
    else if (delay < -1000) nextAt = performance.now(); // do not burst to catch up
    if (Number(settings.rps || 0) <= 0) continue;
    const url = settings.traffic_url || `http://127.0.0.1:${port}/`;
    const request = http.get(url, { agent, timeout: 5000 }, (response) => response.resume());
    request.on('timeout', () => request.destroy());
    request.on('error', () => {}); // a refused connection: the server's metrics count what happened
  }
}

process.on('SIGHUP', () => {
  try {
    reload();
  } catch (err) {
    console.error(`reload failed: ${err.message}`);
  }
});
process.on('SIGTERM', () => process.exit(0));
if (args['exit-with-parent']) {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 500).unref();
}

app.listen(port, '127.0.0.1', (err) => {
  if (err) {
    console.error(err.message);
    process.exit(1);
  }
  generateTraffic();
});
