// What the small browser scripts share: their settings from the environment,
// `ok:`/`FAIL:` checks, and Chromium launched the one way this machine allows.

import { chromium } from 'playwright-core';
import { tmpdir } from 'node:os';

/// The named environment variables; exits with `FAIL:` when one is missing.
export function requireEnv(names) {
  const missing = names.filter((n) => !process.env[n]);
  if (missing.length) {
    console.error(`FAIL: ${missing.join(', ')} required`);
    process.exit(1);
  }
  return Object.fromEntries(names.map((n) => [n, process.env[n]]));
}

export const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || tmpdir();
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const url = (path) => new URL(path, process.env.BASE_URL).href;

const failures = [];

/// Prints `ok: msg` or `FAIL: msg (detail)`; returns `cond`.
export function check(cond, msg, detail = '') {
  console.log(`${cond ? 'ok' : 'FAIL'}: ${msg}${!cond && detail ? ` (${detail})` : ''}`);
  if (!cond) failures.push(msg);
  return cond;
}

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run'],
  });
}

/// Exits 1 if any check failed.
export function finish() {
  process.exit(failures.length ? 1 : 0);
}
