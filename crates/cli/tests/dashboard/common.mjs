// What browser.mjs and models.mjs share: the environment crates/cli/tests/dashboard.rs
// sets, playwright-core from HOIST_BROWSER_MODULES, a bounded wait on the daemon's API
// and the check that logs each passed step.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';

export const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
export const API = env('HOIST_API'), TOKEN = env('HOIST_TOKEN'), SHOTS = env('HOIST_SHOTS');
const require = createRequire(env('HOIST_BROWSER_MODULES') + '/');
const { chromium } = require('playwright-core');
mkdirSync(SHOTS, { recursive: true });

export const T = 60_000; // every wait is bounded
export function check(cond, what) { if (!cond) throw new Error('check failed: ' + what); console.error('ok: ' + what); }
export async function get(path) { const r = await fetch(API + path); return r.json(); }
export async function waitApi(what, path, f) {
  const end = Date.now() + T;
  let last;
  while (Date.now() < end) {
    last = await get(path);
    if (f(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last).slice(0, 2000)}`);
}

// Debian's Chromium (HOIST_CHROMIUM), headless, without its background traffic.
export function launch() {
  return chromium.launch({
    executablePath: env('HOIST_CHROMIUM'), headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
}
