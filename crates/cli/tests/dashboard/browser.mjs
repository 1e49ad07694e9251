// The dashboard in a real browser (Debian's /usr/bin/chromium driven by
// playwright-core, no browser download), against the real daemon that
// crates/cli/tests/dashboard.rs started with real model servers and traffic.
// Environment: HOIST_API, HOIST_TOKEN, HOIST_BIN, HOIST_HOME, HOIST_MODELS,
// HOIST_CHROMIUM, HOIST_BROWSER_MODULES, HOIST_SHOTS (where screenshots go).
// Prints one JSON line of measurements last; exits non-zero on the first failed check.
import { execFileSync } from 'node:child_process';
import { env, API, TOKEN, SHOTS, T, check, get, waitApi, launch } from './common.mjs';

const measured = {};
function hoist(...args) {
  return execFileSync(env('HOIST_BIN'), ['--home', env('HOIST_HOME'), ...args], { encoding: 'utf8' });
}
const register = (pkg) => hoist('model', 'register', `${env('HOIST_MODELS')}/${pkg}`, '--name', 'm', '--alias', 'champion');
const prod = (s) => s.environments.find((e) => e.name === 'production');
async function shot(page, name, sel) {
  await page.evaluate(() => { document.getElementById('toast').textContent = ''; });
  await (sel ? page.locator(sel) : page).screenshot({ path: `${SHOTS}/${name}.png` });
}

const browser = await launch();
let page = null;
const errors = [];
try {
  // ---- page weight: everything GET / loads ------------------------------------------
  let weight = 0;
  for (const p of ['/', '/assets/app.js', '/assets/app.css']) weight += (await (await fetch(API + p)).arrayBuffer()).byteLength;
  measured.page_weight_bytes = weight;
  check(weight < 500 * 1024, `page weight ${weight} B < 500 KB`);

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  // The wrong token's 401 is expected; any other console error is not.
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('status of 401')) errors.push(m.text()); });
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(API + '/');

  // ---- read-only: release 1 waits for approval, no action is enabled ------------------
  await page.locator('[data-env=production] [data-phase=awaiting_approval]').waitFor({ timeout: T });
  const buttons = page.locator('button[data-action]');
  check(await buttons.count() >= 4, 'the page shows action buttons');
  const enabled = await page.$$eval('button[data-action]', (bs) => bs.filter((b) => !b.disabled).length);
  check(enabled === 0, 'read-only page: no action enabled');
  await shot(page, 'read-only');

  // ---- a wrong token is refused with the API's message --------------------------------
  await page.fill('#token', 'not-the-token');
  await page.press('#token', 'Enter');
  await page.locator('#act-approve-1:enabled').waitFor({ timeout: T });
  await page.click('#act-approve-1');
  await page.click('#c-ok');
  await page.locator('#c-error:visible').waitFor({ timeout: T });
  const refused = await page.textContent('#c-error');
  check(refused.includes("this call needs the daemon's token"), `wrong token refused: ${refused}`);
  await shot(page, 'wrong-token');
  await page.click('#c-cancel');
  check((await get('/api/v1/releases/1')).phase.phase === 'awaiting_approval', 'release 1 still waits');

  // ---- the right token (keyboard only): approve release 1 -----------------------------
  await page.click('#forget');
  await page.focus('#token');
  await page.keyboard.type(TOKEN);
  await page.keyboard.press('Enter');
  await page.locator('#act-approve-1:enabled').focus();
  await page.keyboard.press('Enter');
  await page.locator('#confirm[open]').waitFor();
  await page.locator('#c-ok').focus();
  await page.keyboard.press('Enter');
  await waitApi('release 1 to succeed', '/api/v1/releases/1', (r) => r.outcome && r.outcome.outcome === 'succeeded');
  await page.locator('[data-env=production] dd:has-text("v1")').first().waitFor({ timeout: T });
  check(!(await page.evaluate(() => location.href)).includes(TOKEN), 'the token is in no URL');
  check(!requests.some((u) => u.includes(TOKEN)), 'no request carried the token in its URL');

  // ---- v2: approved from the page, paused at 50%, promoted from the page to 100% -------
  register('breast_cancer_lr');
  await page.locator('#act-approve-2:enabled').waitFor({ timeout: T });
  measured.event_to_screen_ms = [await page.evaluate(() => window.hoistDash.lastLatencyMs)];
  await page.click('#act-approve-2');
  await page.click('#c-ok');
  await page.locator('[data-env=production] [data-weight="50"]').waitFor({ timeout: T });
  measured.event_to_screen_ms.push(await page.evaluate(() => window.hoistDash.lastLatencyMs));
  // Charts: both variants serve the test's traffic (five samples of the candidate's,
  // about 10 s, so that the screenshots show lines).
  await page.waitForFunction(() => {
    const f = document.querySelector('#charts [data-env=production] figure[data-metric=rps]');
    return f && +f.dataset.stableLast > 0 && +f.dataset.candidateLast > 0 && +f.dataset.candidatePoints >= 5;
  }, null, { timeout: T });
  const rps = await page.$eval('#charts [data-env=production] figure[data-metric=rps]', (f) => [+f.dataset.stableLast, +f.dataset.candidateLast]);
  measured.chart_rps_stable_candidate = rps;
  check(rps[0] > 0 && rps[1] > 0, `charts show traffic to both variants: ${rps}`);
  await page.waitForFunction(() => document.querySelectorAll('#release li[data-event=verdict]').length > 0, null, { timeout: T });
  await shot(page, 'environments');
  await shot(page, 'traffic', '#traffic');
  await page.click('#act-step-2');
  await page.click('#c-ok');
  const r2 = await waitApi('release 2 to succeed', '/api/v1/releases/2', (r) => r.outcome);
  check(r2.outcome.outcome === 'succeeded', 'release 2 (approved, promoted from the page) succeeded');
  const s2 = await get('/api/v1/status');
  check(prod(s2).stable.version === '2' && !prod(s2).candidate, 'v2 takes 100% of production');
  // The daemon's progress lines arrive on the stream too.
  await page.locator('#activity li:has-text("release 2 v2")').first().waitFor({ timeout: T });
  check(true, 'the activity list shows release 2\'s progress lines');
  await page.locator('#release h3:has-text("Release #2")').waitFor({ timeout: T });
  await page.locator('#release li[data-event=promote]').waitFor({ timeout: T });
  await shot(page, 'timeline', '#timeline');

  // ---- v3: approved, then aborted from the page: back to v2 ---------------------------
  register('breast_cancer_rf');
  await page.locator('#act-approve-3:enabled').waitFor({ timeout: T });
  await page.click('#act-approve-3');
  await page.click('#c-ok');
  await page.locator('[data-env=production] [data-weight="50"]').waitFor({ timeout: T });
  await page.click('#act-abort-3');
  await page.fill('#c-reason', 'aborted in the browser test');
  await shot(page, 'abort-confirm');
  await page.click('#c-ok');
  const r3 = await waitApi('release 3 to end', '/api/v1/releases/3', (r) => r.outcome);
  check(r3.outcome.outcome === 'aborted' && r3.outcome.reason === 'aborted in the browser test', 'release 3 aborted with the reason typed');
  const s3 = await get('/api/v1/status');
  check(prod(s3).stable.version === '2' && !prod(s3).candidate && prod(s3).weight === 0, 'the abort rolled back to v2');
  await page.locator('[data-env=production] [data-weight="0"]').waitFor({ timeout: T });

  // ---- roll back to a chosen version (v1) ---------------------------------------------
  await page.click('#act-rollback-production');
  await page.selectOption('#c-version', '1');
  await page.click('#c-ok');
  await waitApi('v1 live again', '/api/v1/status', (s) => prod(s).stable && prod(s).stable.version === '1' && !s.active.length);
  await page.locator('[data-env=production] dd:has-text("v1")').first().waitFor({ timeout: T });
  const hist = await get('/api/v1/releases');
  check(hist.releases[0].trigger === 'rollback to v1', 'the rollback chose v1');

  // ---- history filters, the registry --------------------------------------------------
  await page.selectOption('#f-outcome', 'aborted');
  const rows = await page.$$eval('#h-table tbody tr', (trs) => trs.map((t) => t.dataset.outcome));
  check(rows.length === 1 && rows[0] === 'aborted', `history filtered by outcome: ${rows}`);
  await page.selectOption('#f-outcome', '');
  await page.selectOption('#f-env', 'production');
  await shot(page, 'history', '#history');
  const versions = await page.$$eval('#v-table tbody tr', (trs) => trs.map((t) => [t.dataset.version, t.querySelector('code').textContent]));
  check(versions.length === 3 && versions.every(([, d]) => d.startsWith('sha256:')), `registry versions with digests: ${JSON.stringify(versions)}`);
  await shot(page, 'registry', '#registry-view');
  check(errors.length === 0, `no script error: ${errors.join('; ')}`);

  // ---- a phone's width, dark ----------------------------------------------------------
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
  const pp = await phone.newPage();
  await pp.goto(API + '/');
  await pp.locator('[data-env=production]').first().waitFor({ timeout: T });
  const overflow = await pp.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no horizontal scrolling at 390 px (${overflow})`);
  await shot(pp, 'phone-dark');
  await phone.close();

  // ---- first render with 20 models and 500 releases -----------------------------------
  const big = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const bp = await big.newPage();
  const real = await get('/api/v1/status');
  const rel = (await get('/api/v1/releases')).releases;
  const one = (await get('/api/v1/models')).models[0];
  const many = { models: Array.from({ length: 20 }, (_, i) => ({ ...one, name: `model-${i}` })) };
  const releases = Array.from({ length: 500 }, (_, i) => {
    const x = structuredClone(rel[i % rel.length]);
    x.id = 500 - i; x.model = `model-${i % 20}`;
    return x;
  });
  await bp.route((u) => u.pathname === '/api/v1/models', (r) => r.fulfill({ json: many }));
  await bp.route((u) => /^\/api\/v1\/models\/model-\d+\/status$/.test(u.pathname), (r) => r.fulfill({ json: { ...real, model: 'model-0' } }));
  // The daemon has no model-0: its metrics and versions are the real model's.
  await bp.route((u) => ['/api/v1/metrics', '/api/v1/versions'].includes(u.pathname),
    async (r) => r.fulfill({ json: { ...(await get(new URL(r.request().url()).pathname)), model: 'model-0' } }));
  await bp.route((u) => u.pathname === '/api/v1/releases', (r) => r.fulfill({ json: { releases } }));
  const t0 = Date.now();
  await bp.goto(API + '/');
  await bp.waitForFunction(() => window.hoistDash.firstRenderMs !== null, null, { timeout: T });
  measured.first_render_ms_20_models_500_releases = Math.round(await bp.evaluate(() => window.hoistDash.firstRenderMs));
  measured.first_render_wall_ms = Date.now() - t0;
  check(await bp.locator('#m-table tbody tr').count() === 20, '20 models listed');
  check(await bp.locator('#models .model[data-model=model-0]').count() === 1, 'the first model shown');
  check(await bp.locator('#h-table tbody tr').count() === 500, '500 releases rendered');
  measured.render_work_ms_20_models_500_releases = Math.round(await bp.evaluate(() => window.hoistDash.lastRenderWorkMs));
  // Timings are reported, not asserted (a loaded CI machine is no benchmark).
  await big.close();
} catch (e) {
  // What the page showed when a check failed.
  console.error('script errors: ' + errors.join('; '));
  if (page) {
    await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
    console.error('page text: ' + (await page.innerText('body').catch(() => '')).slice(0, 4000));
  }
  throw e;
} finally {
  await browser.close();
}
console.log(JSON.stringify(measured));
