// The dashboard with two models in one daemon (`[[models]]` fraud and churn), in a
// real browser against the real daemon crates/cli/tests/dashboard.rs started, with
// traffic to churn only. Fraud's and churn's v1 wait for approval when this starts.
// Environment: as browser.mjs. Exits non-zero on the first failed check.
import { execFileSync } from 'node:child_process';
import { env, API, TOKEN, SHOTS, T, check, get, waitApi, launch } from './common.mjs';
const register = (pkg, name) => execFileSync(env('HOIST_BIN'), ['--home', env('HOIST_HOME'), 'model', 'register',
  `${env('HOIST_MODELS')}/${pkg}`, '--name', name, '--alias', 'champion'], { encoding: 'utf8' });
const prod = (s) => s.environments.find((e) => e.name === 'production');
const status = (m) => get(`/api/v1/models/${m}/status`);
const live = async (m) => { const e = prod(await status(m)); return e.stable ? e.stable.version : null; };

const browser = await launch();
let page = null;
const errors = [];
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(API + '/');

  // ---- every model listed; the first one shown -----------------------------------------
  await page.locator('#m-table tbody tr').nth(1).waitFor({ timeout: T });
  const rows = await page.$$eval('#m-table tbody tr', (trs) => trs.map((t) => [t.dataset.model, +t.querySelector('[data-active]').dataset.active]));
  check(JSON.stringify(rows) === JSON.stringify([['fraud', 1], ['churn', 1]]), `both models listed, one release each in progress: ${JSON.stringify(rows)}`);
  check(await page.isVisible('#model-select'), 'the model picker is shown');
  check(await page.$eval('#model-select', (s) => [...s.options].map((o) => o.value).join()) === 'fraud,churn', 'the picker offers both models');
  await page.locator('#models .model[data-model=fraud]').waitFor({ timeout: T });
  check(await page.locator('#models .model').count() === 1, 'one model shown at a time');
  check(await page.$eval('#v-table tbody tr td', (td) => td.textContent) === 'fraud', 'the registry view lists fraud\'s versions');

  // ---- approve fraud's release from fraud's card: churn's still waits -------------------
  await page.fill('#token', TOKEN);
  await page.press('#token', 'Enter');
  const fraud1 = (await get('/api/v1/models/fraud/releases')).releases[0].id;
  const churn1 = (await get('/api/v1/models/churn/releases')).releases[0].id;
  await page.locator(`#models [data-model=fraud] #act-approve-${fraud1}:enabled`).click({ timeout: T });
  await page.click('#c-ok');
  await waitApi('fraud v1 live', '/api/v1/models/fraud/status', (s) => prod(s).stable && !s.active.length);
  check((await status('churn')).active[0].phase.phase === 'awaiting_approval', 'churn\'s release still waits for approval');
  await page.locator('#m-table tr[data-model=fraud] td[data-env=production]:has-text("v1")').waitFor({ timeout: T });
  check(await page.textContent('#m-table tr[data-model=churn] td[data-env=production]') === 'none', 'the list shows churn with nothing live yet');

  // ---- switch to churn with the picker: its release, approved from its card ------------
  await page.selectOption('#model-select', 'churn');
  await page.locator('#models .model[data-model=churn]').waitFor({ timeout: T });
  check((await page.evaluate(() => location.search)) === '?model=churn', 'the URL names the model shown');
  await page.locator(`#act-approve-${churn1}:enabled`).click({ timeout: T });
  await page.click('#c-ok');
  await waitApi('churn v1 live', '/api/v1/models/churn/status', (s) => prod(s).stable && !s.active.length);
  await page.locator('#models [data-model=churn] [data-env=production] dd:has-text("v1")').first().waitFor({ timeout: T });

  // ---- churn's v2 at 50% under churn's traffic: churn's charts show both variants -------
  register('breast_cancer_lr', 'churn');
  await page.locator('#models [data-model=churn] button[data-action=Approve]:enabled').click({ timeout: T });
  await page.click('#c-ok');
  await page.locator('#models [data-model=churn] [data-env=production] [data-weight="50"]').waitFor({ timeout: T });
  await page.waitForFunction(() => {
    const f = document.querySelector('#charts [data-env=production] figure[data-metric=rps]');
    return f && +f.dataset.stableLast > 0 && +f.dataset.candidateLast > 0 && +f.dataset.candidatePoints >= 2;
  }, null, { timeout: T });
  check(true, 'churn\'s charts show traffic to both of its variants');
  await page.locator('#activity li[data-model=churn]:has-text("churn: release")').first().waitFor({ timeout: T });
  check(true, 'the activity list names the model of each line');
  const churnVersions = await page.$$eval('#v-table tbody tr', (trs) => trs.map((t) => t.cells[0].textContent + ' v' + t.dataset.version));
  check(JSON.stringify(churnVersions) === '["churn v2","churn v1"]', `the registry view lists churn's versions: ${churnVersions}`);
  await page.screenshot({ path: `${SHOTS}/models.png` });

  // ---- fraud (from the list): no traffic in its charts, its release history untouched ---
  await page.click('#m-table button[data-show-model=fraud]');
  await page.locator('#models .model[data-model=fraud]').waitFor({ timeout: T });
  await page.waitForFunction(() => {
    const f = document.querySelector('#charts [data-env=production] figure[data-metric=rps]');
    return f && +f.dataset.points >= 2;
  }, null, { timeout: T });
  // (fraud's v1 was a candidate while it waited for approval: no traffic either way)
  const fraudRps = await page.$eval('#charts [data-env=production] figure[data-metric=rps]', (f) => [f.dataset.stableLast, f.dataset.candidateLast]);
  check(fraudRps[0] === '0' && ['', '0'].includes(fraudRps[1]), `fraud's charts: no traffic (${fraudRps})`);
  check(await page.locator('#models [data-model=fraud] button[data-action=Approve]').count() === 0, 'fraud shows no release in progress');
  const fraudVersions = await page.$$eval('#v-table tbody tr', (trs) => trs.map((t) => t.cells[0].textContent + ' v' + t.dataset.version));
  check(JSON.stringify(fraudVersions) === '["fraud v1"]', `the registry view lists fraud's versions: ${fraudVersions}`);

  // ---- back to churn: promote fully; then roll churn back to v1 from its card ------------
  await page.selectOption('#model-select', 'churn');
  await page.locator('#models [data-model=churn] button[data-action="Promote fully"]:enabled').click({ timeout: T });
  await page.click('#c-ok');
  await waitApi('churn v2 live', '/api/v1/models/churn/status', (s) => prod(s).stable && prod(s).stable.version === '2' && !s.active.length);
  await page.locator('#models [data-model=churn] [data-env=production] [data-weight="0"]').waitFor({ timeout: T });
  await page.click('#act-rollback-production');
  await page.selectOption('#c-version', '1');
  await page.click('#c-ok');
  await waitApi('churn back on v1', '/api/v1/models/churn/status', (s) => prod(s).stable && prod(s).stable.version === '1' && !s.active.length);
  check(await live('fraud') === '1', 'the rollback left fraud alone');
  await page.locator('#m-table tr[data-model=churn] td[data-env=production]:has-text("v1")').waitFor({ timeout: T });

  // ---- an unknown model in the URL: told, and the first model shown ----------------------
  await page.goto(API + '/?model=nope');
  await page.locator('#models .model[data-model=fraud]').waitFor({ timeout: T });
  check((await page.textContent('#toast')).includes('no model nope'), 'an unknown model in the URL is named');
  check(errors.length === 0, `no script error: ${errors.join('; ')}`);
} catch (e) {
  console.error('script errors: ' + errors.join('; '));
  if (page) {
    await page.screenshot({ path: `${SHOTS}/models-failure.png`, fullPage: true }).catch(() => {});
    console.error('page text: ' + (await page.innerText('body').catch(() => '')).slice(0, 4000));
  }
  throw e;
} finally {
  await browser.close();
}
