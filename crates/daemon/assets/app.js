// hoist's dashboard: reads the daemon's API, follows its live stream
// (GET /api/v1/events), and acts with the API token (Authorization header only;
// kept in sessionStorage). No framework, no build step: the daemon embeds this file.
'use strict';

const TOKEN_KEY = 'hoist.token';
const WINDOW_MS = 15 * 60 * 1000;
const S = {
  status: null, releases: [], versions: null, versionsError: null, samples: [],
  detail: null, selected: null, pinned: false, stream: 'connecting',
  // Every model the daemon delivers (GET /api/v1/models) and the one shown.
  models: [], model: new URLSearchParams(location.search).get('model') || null,
};
const enc = encodeURIComponent;
// The model shown's API paths (the per-model routes work with one model too).
const modelPath = (m) => '/api/v1/models/' + enc(m);
// What the tests and curious people can read: render counts and timings.
const dash = (window.hoistDash = { renders: 0, firstRenderMs: null, lastLatencyMs: null, events: 0 });

// ---- small helpers ---------------------------------------------------------------
function h(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v; // CSSOM: allowed by the page's CSP
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false)
    e.append(k instanceof Node ? k : String(k));
  return e;
}
const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
}
const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
function headers(json) {
  const hd = {};
  if (token()) hd.Authorization = 'Bearer ' + token();
  if (json) hd['Content-Type'] = 'application/json';
  return hd;
}
async function api(path, opts = {}) {
  const r = await fetch(path, {
    method: opts.method || 'GET', headers: headers(!!opts.body),
    body: opts.body ? JSON.stringify(opts.body) : undefined, cache: 'no-store',
  });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  return { ok: r.ok, status: r.status, body };
}
const fmtTime = (ms) => ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : '';
const fmtDate = (ms) => ms ? new Date(ms).toLocaleString([], { hour12: false }) : '';
function fmtDur(ms) {
  if (ms === null || ms === undefined || ms < 0) return '';
  const sec = Math.round(ms / 1000);
  if (sec < 60) return sec + ' s';
  if (sec < 3600) return Math.floor(sec / 60) + ' min ' + (sec % 60) + ' s';
  return Math.floor(sec / 3600) + ' h ' + Math.floor((sec % 3600) / 60) + ' min';
}
function fmtNum(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v)) return v.toLocaleString('en');
  const a = Math.abs(v);
  return a !== 0 && (a < 0.001 || a >= 1e6) ? v.toExponential(2) : String(+v.toPrecision(4));
}
const short = (d) => d ? d.replace(/^sha256:/, '').slice(0, 12) : '';
function toast(msg) {
  const t = $('toast'); t.textContent = msg;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.textContent = ''; }, 6000);
}

// ---- data ------------------------------------------------------------------------
// The model shown: its status (environments, active releases) as one entry.
function models(st) {
  if (!st) return [];
  return [{ model: st.model, environments: st.environments, active: st.active }];
}
function envName(rel) { const e = rel.plan.envs[rel.env]; return e ? e.name : ''; }
function activeFor(m, env) {
  return (m.active || []).find((a) => envName(a.release) === env.name && a.release.phase.phase !== 'done');
}

// The API flattens a release into its views; the page keeps it apart.
const wrap = (x) => ({ release: x, summary: x.summary, progress: x.progress, last_verdict: x.last_verdict, transitions: x.transitions });
// Every model's summary; picks the model shown (the URL's `?model=`, else the first).
async function loadModels() {
  const r = await api('/api/v1/models');
  if (!r.ok) return r;
  S.models = r.body.models;
  const names = S.models.map((m) => m.name);
  if (!names.includes(S.model)) {
    if (S.model !== null) toast(`no model ${S.model} here: showing ${names[0]}`);
    S.model = names[0] || null;
  }
  return r;
}
async function loadStatus() {
  if (S.model === null) await loadModels();
  const r = await api(S.model === null ? '/api/v1/status' : modelPath(S.model) + '/status');
  if (r.ok) {
    r.body.active = (r.body.active || []).map(wrap);
    S.status = r.body;
    S.readError = null;
  } else {
    S.readError = r.status === 401
      ? 'This daemon needs the token for reads too (its API listens beyond loopback): enter it above.'
      : `The daemon answered HTTP ${r.status}` + (r.body && r.body.error ? `: ${r.body.error.message}` : '');
  }
  return r;
}
async function loadReleases() {
  const r = await api('/api/v1/releases?limit=500');
  if (r.ok) S.releases = r.body.releases.map(wrap);
}
async function loadVersions() {
  const m = S.model;
  const r = await api('/api/v1/versions' + (m === null ? '' : '?model=' + enc(m)));
  if (m !== S.model) return;
  if (r.ok) { S.versions = r.body; S.versionsError = null; } else S.versionsError = r.body && r.body.error;
}
async function loadMetrics() {
  const m = S.model;
  const r = await api('/api/v1/metrics' + (m === null ? '' : '?model=' + enc(m)));
  if (r.ok && m === S.model) S.samples = r.body.samples;
}
async function loadDetail() {
  if (!S.pinned) {
    const act = models(S.status).flatMap((m) => m.active || []);
    const mine = S.releases.find((x) => x.release.model === S.model) || S.releases[0];
    const next = act.length ? act[0].release.id : (mine ? mine.release.id : null);
    if (next !== null) S.selected = next;
  }
  if (S.selected === null) { S.detail = null; return; }
  const r = await api('/api/v1/releases/' + S.selected);
  if (r.ok) S.detail = wrap(r.body);
}

let pending = null;
let pendingAt = null;
let wantReleases = false;
function refresh(atMs, releases) {
  if (atMs && (!pendingAt || atMs < pendingAt)) pendingAt = atMs;
  wantReleases = wantReleases || releases;
  if (pending) return;
  pending = setTimeout(async () => {
    const at = pendingAt, rel = wantReleases;
    pendingAt = null; wantReleases = false;
    try {
      // A new release may come from a new registry version: read both again.
      await Promise.all([rel ? loadModels() : null, loadStatus(), rel ? loadReleases() : null, rel ? loadVersions() : null]);
      await loadDetail();
      renderAll();
      if (at) { dash.lastLatencyMs = Date.now() - at; document.body.dataset.latency = dash.lastLatencyMs; }
    } finally { pending = null; if (pendingAt || wantReleases) refresh(null, false); }
  }, 25);
}

// ---- the live stream -------------------------------------------------------------
async function follow() {
  let wait = 500;
  for (;;) {
    try {
      const r = await fetch('/api/v1/events', { headers: headers(false), cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      setStream('live');
      wait = 500;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          let name = 'message'; const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length) onEvent(name, JSON.parse(data.join('\n')));
        }
      }
    } catch (_) { /* reconnect below */ }
    setStream('reconnecting');
    await new Promise((res) => setTimeout(res, wait));
    wait = Math.min(wait * 2, 5000);
  }
}
function setStream(st) {
  S.stream = st;
  const c = $('conn');
  c.textContent = st === 'live' ? 'live' : st + '…';
  c.className = 'badge ' + (st === 'live' ? 'ok' : 'warn');
}
function onEvent(name, d) {
  dash.events++;
  if (name === 'hello' || name === 'lagged') { loadAll(); return; }
  if (name === 'transition') refresh(d.at_ms, true);
  else if (name === 'verdict') refresh(d.at_ms, false);
  else if (name === 'log') {
    // What `hoist up` prints, newest first, the last 30.
    // With several models, each line names its release's model (when the page knows
    // the release already).
    const rel = S.models.length > 1 && S.releases.find((x) => x.release.id === d.release);
    const model = rel ? rel.release.model : null;
    const li = h('li', { 'data-release': d.release ?? '', 'data-model': model }, h('span', { class: 'muted', text: fmtTime(d.at_ms) }), ' ',
      model ? h('b', { text: model + ': ' }) : null, d.message);
    const ol = $('activity');
    ol.prepend(li);
    while (ol.children.length > 30) ol.lastChild.remove();
  } else if (name === 'metrics') {
    // One sample per model: the shown model's only.
    if (d.model !== undefined && d.model !== S.model) return;
    S.samples.push(d);
    const cut = d.at_ms - WINDOW_MS;
    while (S.samples.length && S.samples[0].at_ms < cut) S.samples.shift();
    renderCharts();
  }
}

async function loadAll() {
  await loadModels();
  await Promise.all([loadStatus(), loadReleases(), loadVersions(), loadMetrics()]);
  renderAll();
  // The release shown in the timeline needs the list first: drawn right after.
  await loadDetail();
  keepFocus(renderRelease);
}

// ---- rendering -------------------------------------------------------------------
function keepFocus(fn) {
  const id = document.activeElement && document.activeElement.id;
  fn();
  if (id && document.activeElement !== $(id) && $(id)) $(id).focus();
}
function renderAll() {
  const t0 = performance.now();
  keepFocus(() => { renderPicker(); renderModelList(); renderModels(); renderCharts(); renderRelease(); renderHistory(); renderVersions(); renderMode(); });
  dash.renders++;
  document.body.dataset.renders = dash.renders;
  dash.lastRenderWorkMs = performance.now() - t0;
  if (dash.firstRenderMs === null) dash.firstRenderMs = performance.now();
}

function renderMode() {
  const has = !!token();
  $('mode').textContent = has ? 'token set: actions enabled' : 'read-only';
  $('mode').className = 'badge ' + (has ? 'ok' : '');
  $('forget').hidden = !has;
  for (const b of document.querySelectorAll('button[data-action]')) {
    b.disabled = !has || b.dataset.enabled !== '1';
    b.title = has ? '' : 'enter the API token to act';
  }
}

function phaseText(a) {
  const r = a.release, p = r.phase;
  switch (p.phase) {
    case 'awaiting_approval': return 'waiting for approval';
    case 'step': {
      const steps = r.plan.envs[r.env].steps;
      return `step ${p.index + 1} of ${steps.length} at ${r.weight}%` + (r.shadow ? `, shadow ${r.shadow}%` : '');
    }
    default: return p.phase.replace(/_/g, ' ');
  }
}
function pauseLeft(r) {
  const p = r.phase;
  if (p.phase !== 'step') return null;
  if (p.until_ms === null || p.until_ms === undefined) {
    const step = r.plan.envs[r.env].steps[p.index];
    return step && step.pause === 'manual' ? h('span', { text: 'paused until promoted' }) : null;
  }
  return h('span', { 'data-until': p.until_ms, text: fmtDur(p.until_ms - Date.now()) + ' left' });
}

function deployment(d) {
  if (!d) return h('span', { class: 'muted', text: 'none' });
  return h('span', {}, h('b', { text: 'v' + d.version }), ' ',
    h('code', { title: d.digest, text: short(d.digest) }), ' ',
    h('span', { class: 'muted', text: `release ${d.release_id}` }));
}

function actionButton(id, label, enabled, onclick, cls) {
  return h('button', { id, type: 'button', class: cls, 'data-action': label, 'data-enabled': enabled ? '1' : '0',
    disabled: true, onclick }, label);
}

// The model picker (hidden with one model): the page shows one model at a time.
function renderPicker() {
  const sel = $('model-select');
  const names = S.models.map((m) => m.name);
  $('model-pick').hidden = names.length < 2;
  if ([...sel.options].map((o) => o.value).join('\n') !== names.join('\n'))
    sel.replaceChildren(...names.map((n) => h('option', { value: n, text: n })));
  if (S.model !== null) sel.value = S.model;
}
// With several models: one row each (what is live where, what is in progress), a
// button to show it.
function renderModelList() {
  const box = $('model-list');
  box.hidden = S.models.length < 2;
  if (box.hidden) { box.replaceChildren(); return; }
  const envs = [];
  for (const m of S.models) for (const e of m.environments) if (!envs.includes(e.name)) envs.push(e.name);
  box.replaceChildren(h('table', { id: 'm-table', 'aria-label': 'every model' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Model' }), h('th', { scope: 'col', text: 'Trigger' }),
      ...envs.map((e) => h('th', { scope: 'col', text: `live in ${e}` })), h('th', { scope: 'col', text: 'In progress' }))),
    h('tbody', {}, ...S.models.map((m) => h('tr', { 'data-model': m.name, class: m.name === S.model ? 'current' : null,
      'aria-current': m.name === S.model ? 'true' : null },
      h('td', {}, h('button', { type: 'button', class: 'link', 'data-show-model': m.name, onclick: () => showModel(m.name),
        'aria-label': `show model ${m.name}`, text: m.name })),
      h('td', { text: m.trigger }),
      ...envs.map((en) => {
        const e = m.environments.find((x) => x.name === en);
        return h('td', { 'data-env': en, text: !e ? '' : e.live ? 'v' + e.live : 'none' });
      }),
      h('td', { 'data-active': m.active.length, text: m.active.map((r) => `#${r.id} v${r.version} (${r.phase.phase.replace(/_/g, ' ')})`).join(', ') }))))));
}
// Show another model: its status, charts, versions; the URL keeps it (?model=).
function showModel(name) {
  if (name === S.model) return;
  S.model = name;
  S.samples = []; S.versions = null; S.status = null; S.pinned = false;
  const u = new URL(location.href);
  u.searchParams.set('model', name);
  history.replaceState(null, '', u);
  renderAll();
  loadAll().catch(() => {});
}

function renderModels() {
  const box = $('models');
  const ms = models(S.status);
  $('registry').textContent = S.status ? '· ' + S.status.registry : '';
  box.replaceChildren(...ms.map((m) => h('div', { class: 'model', 'data-model': m.model },
    h('h3', {}, 'Model ', h('code', { text: m.model })),
    h('div', { class: 'grid' }, ...(m.environments || []).map((e) => envCard(m, e))))));
  if (!ms.length) box.replaceChildren(h('p', { class: 'muted', role: 'alert', text: S.readError || (S.model !== null ? 'loading…' : 'no answer from the daemon yet') }));
}

function envCard(m, e) {
  const a = activeFor(m, e);
  const r = a && a.release;
  const kids = [
    h('h3', {}, e.name, ' ', h('span', { class: 'muted', text: `${e.strategy} · ${e.target}` })),
    h('dl', { class: 'kv' },
      h('dt', { text: 'stable' }), h('dd', {}, deployment(e.stable)),
      h('dt', { text: 'candidate' }), h('dd', {}, deployment(e.candidate)),
      h('dt', { text: 'weights' }), h('dd', { 'data-weight': e.weight,
        text: e.stable ? `stable ${100 - e.weight}% · candidate ${e.weight}%` : 'no stable version yet' })),
    e.stable ? h('div', { class: 'bar', role: 'img', 'aria-label': `candidate weight ${e.weight}%` },
      h('span', { style: `width:${e.weight}%` })) : null,
  ];
  if (r) {
    const waiting = r.phase.phase === 'awaiting_approval';
    const stepping = r.phase.phase === 'step';
    const v = a.last_verdict;
    kids.push(h('dl', { class: 'kv', 'data-release': r.id, 'data-phase': r.phase.phase },
      h('dt', { text: 'release' }), h('dd', {},
        h('a', { href: '#timeline', onclick: () => select(r.id), text: `#${r.id} v${r.version}` }), ' ',
        waiting ? h('span', { class: 'badge warn', text: 'waiting for approval' }) : null),
      h('dt', { text: 'where' }), h('dd', {}, phaseText(a), ' ', pauseLeft(r) || ''),
      h('dt', { text: 'progress' }), h('dd', { text: Math.round(a.progress * 100) + '%' }),
      v ? h('dt', { text: 'last verdict' }) : null,
      v ? h('dd', {}, verdictBadge(v.verdict), ' ', v.verdict.reason || '') : null,
      h('dt', { text: 'summary' }), h('dd', { text: a.summary })));
    kids.push(h('div', { class: 'actions' },
      actionButton(`act-approve-${r.id}`, 'Approve', waiting, () => approve(r), 'primary'),
      actionButton(`act-step-${r.id}`, 'Promote one step', stepping, () => promote(r, false)),
      actionButton(`act-full-${r.id}`, 'Promote fully', stepping, () => promote(r, true)),
      actionButton(`act-abort-${r.id}`, 'Abort', true, () => abort(r), 'danger')));
  } else {
    kids.push(h('p', { class: 'muted', text: 'no release in progress' }));
  }
  kids.push(h('div', { class: 'actions' },
    actionButton(`act-rollback-${e.name}`, 'Roll back…', !!e.stable, () => rollback(m, e), 'danger')));
  return h('article', { class: 'card', 'data-env': e.name, 'aria-label': `environment ${e.name}` }, ...kids);
}

function verdictBadge(v) {
  const n = v.verdict;
  return h('span', { class: 'badge ' + (n === 'pass' ? 'ok' : n === 'fail' ? 'bad' : 'warn'), text: n });
}

// ---- charts ----------------------------------------------------------------------
const METRICS = [
  ['rps', 'requests / s', (v) => fmtNum(v)],
  ['error_rate', 'error rate', (v) => v === null || v === undefined ? '–' : (v * 100).toFixed(2) + '%'],
  ['p50_ms', 'p50 latency (ms)', fmtNum],
  ['p99_ms', 'p99 latency (ms)', fmtNum],
];
function renderCharts() {
  const envs = [];
  for (const sm of S.samples) for (const e of sm.envs) if (!envs.includes(e.env)) envs.push(e.env);
  const now = S.samples.length ? S.samples[S.samples.length - 1].at_ms : Date.now();
  const box = $('charts');
  if (!envs.length) { box.replaceChildren(h('p', { class: 'muted', text: 'no samples yet (one every 2 s)' })); return; }
  box.replaceChildren(...envs.map((env) => h('div', { 'data-env': env },
    h('h3', {}, env, ' ', h('span', { class: 'key-stable', text: '━ stable' }), ' ',
      h('span', { class: 'key-candidate', text: '━ candidate' })),
    h('div', { class: 'charts' }, ...METRICS.map(([key, label, fmt]) => chart(env, key, label, fmt, now))))));
}
function chart(env, key, label, fmt, now) {
  const W = 300, H = 120, L = 34, B = 16, T = 6;
  const series = { stable: [], candidate: [] };
  for (const sm of S.samples) {
    const e = sm.envs.find((x) => x.env === env);
    if (!e) continue;
    for (const v of ['stable', 'candidate']) {
      const val = e[v][key];
      series[v].push([sm.at_ms, e[v].version ? val : null]);
    }
  }
  const vals = [...series.stable, ...series.candidate].map((p) => p[1]).filter((x) => typeof x === 'number');
  const max = Math.max(key === 'error_rate' ? 0.01 : 1, ...vals) * 1.1;
  // The last 15 minutes, or less while the daemon has not run that long.
  const first = S.samples.length ? S.samples[0].at_ms : now;
  const span = Math.min(WINDOW_MS, Math.max(30_000, now - first));
  const x = (t) => L + ((t - (now - span)) / span) * (W - L - 2);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const path = (pts) => {
    let d = '', pen = false;
    for (const [t, v] of pts) {
      if (typeof v !== 'number') { pen = false; continue; }
      d += (pen ? 'L' : 'M') + x(t).toFixed(1) + ' ' + y(v).toFixed(1);
      pen = true;
    }
    return d;
  };
  const last = (v) => { const p = series[v].filter((q) => typeof q[1] === 'number'); return p.length ? p[p.length - 1][1] : null; };
  const ls = last('stable'), lc = last('candidate');
  const desc = `${label} in ${env}: stable ${fmt(ls)}, candidate ${fmt(lc)}`;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': desc, preserveAspectRatio: 'none' },
    s('line', { class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B }),
    s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    s('text', { x: 2, y: T + 8 }, key === 'error_rate' ? (max * 100).toFixed(1) + '%' : fmtNum(+max.toPrecision(2))),
    s('text', { x: 2, y: H - B }, '0'),
    s('text', { x: L, y: H - 3 }, span >= WINDOW_MS ? '−15 min' : '−' + fmtDur(span)),
    s('text', { x: W - 22, y: H - 3 }, 'now'),
    s('path', { class: 's-stable', d: path(series.stable) }),
    s('path', { class: 's-candidate', d: path(series.candidate) }));
  return h('figure', { 'data-metric': key, 'data-stable-last': ls ?? '', 'data-candidate-last': lc ?? '', 'data-points': series.stable.length,
    'data-candidate-points': series.candidate.filter((p) => typeof p[1] === 'number').length },
    h('figcaption', {}, h('span', { text: label }),
      h('span', {}, h('span', { class: 'key-stable', text: fmt(ls) }), ' / ', h('span', { class: 'key-candidate', text: fmt(lc) }))),
    svg);
}

// ---- the release timeline --------------------------------------------------------
function select(id) {
  S.selected = id; S.pinned = true;
  loadDetail().then(() => { renderRelease(); $('h-timeline').focus(); });
}
function renderRelease() {
  const box = $('release');
  const d = S.detail;
  if (!d) { box.replaceChildren(h('p', { class: 'muted', text: 'no release yet' })); return; }
  const r = d.release;
  const out = r.outcome;
  const head = h('div', { class: 'card' },
    h('h3', {}, `Release #${r.id}: ${r.model} v${r.version} `,
      out ? h('span', { class: 'badge ' + (out.outcome === 'succeeded' ? 'ok' : 'bad'), text: out.outcome }) : h('span', { class: 'badge warn', text: 'in progress' })),
    h('dl', { class: 'kv' },
      h('dt', { text: 'summary' }), h('dd', { text: d.summary }),
      h('dt', { text: 'plan' }), h('dd', { text: r.plan.envs.map((e) => `${e.name}: ` + (e.steps.map((st) => (st.shadow ? `shadow ${st.shadow}%` : `${st.weight}%`) + (st.pause === 'manual' ? ' (manual)' : st.pause && st.pause.ms ? ` (${fmtDur(st.pause.ms)})` : '')).join(' → ') || 'one step') + (e.approval ? ', approval' : '')).join('; ') }),
      h('dt', { text: 'trigger' }), h('dd', { text: r.trigger }),
      h('dt', { text: 'digest' }), h('dd', {}, h('code', { text: r.digest || '' })),
      out && out.reason ? h('dt', { text: 'reason' }) : null, out && out.reason ? h('dd', { text: out.reason }) : null,
      h('dt', { text: 'took' }), h('dd', { text: fmtDur((out ? r.updated_ms : Date.now()) - r.created_ms) })));
  if (S.pinned) head.append(h('button', { type: 'button', id: 'follow-live', onclick: () => { S.pinned = false; refresh(null, false); },
    text: 'Follow the release in progress' }));
  box.replaceChildren(head, h('ol', { class: 'timeline', 'aria-label': `transitions of release ${r.id}` }, ...timeline(d.transitions)));
}
function timeline(ts) {
  // Runs of the same verdict are one entry (the last one's numbers, and how many).
  const items = [];
  for (const t of ts) {
    const prev = items[items.length - 1];
    if (t.event.event === 'verdict' && prev && prev.t.event.event === 'verdict' && prev.t.event.verdict.verdict === t.event.verdict.verdict &&
      !t.actions.length && !prev.t.actions.length) { prev.n++; prev.t = t; continue; }
    items.push({ t, n: 1 });
  }
  return items.map(({ t, n }) => {
    const ev = t.event;
    const cls = ev.event === 'verdict' ? ev.verdict.verdict : /failed|abort/.test(ev.event) ? 'bad' : 'good';
    return h('li', { class: cls, 'data-event': ev.event },
      h('div', {}, h('span', { class: 'muted', text: fmtTime(t.at_ms) }), ' ', h('b', { text: ev.event.replace(/_/g, ' ') }),
        n > 1 ? ` ×${n}` : '', ev.event === 'verdict' ? [' ', verdictBadge(ev.verdict)] : '',
        ev.full !== undefined ? (ev.full ? ' (full)' : ' (one step)') : '',
        ' → ', h('span', { text: t.phase })),
      ev.reason || (ev.verdict && ev.verdict.reason) ? h('div', { text: ev.reason || ev.verdict.reason }) : null,
      ev.event === 'verdict' ? numbersView(ev.numbers) : null,
      ev.reports ? gatesView(ev.reports) : null,
      t.actions.length ? h('div', { class: 'muted', text: t.actions.map(actionText).join(' · ') }) : null);
  });
}
function actionText(a) {
  switch (a.action) {
    case 'set_weight': return `weight ${a.weight}% in ${a.env}`;
    case 'mirror': return `mirror ${a.percent}% in ${a.env}`;
    case 'wake_at': return `pause until ${fmtTime(a.at_ms)}`;
    case 'tag': return `tag ${a.key}=${a.value}`;
    default: return a.action.replace(/_/g, ' ') + (a.env ? ` in ${a.env}` : '');
  }
}
function flat(v, prefix, out) {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flat(x, prefix ? prefix + ' ' + k : k, out);
  } else if (!Array.isArray(v)) out.push([prefix, v]);
  return out;
}
function numbersView(n) {
  if (!n || typeof n !== 'object') return null;
  const kids = flat(n, '', []).map(([k, v]) => h('span', {}, k.replace(/_/g, ' ') + ' ', h('b', { text: fmtNum(v) })));
  const box = h('div', { class: 'numbers' }, ...kids);
  if (n.drift && Array.isArray(n.drift.stable_classes)) return h('div', {}, box, histogram(n.drift));
  // A regressor on live traffic: its values in bins cut at stable's deciles.
  const v = n.values && n.values.drift;
  if (v && Array.isArray(v.stable_bins)) {
    return h('div', {}, box, histogram({ psi: v.psi, stable_classes: v.stable_bins, candidate_classes: v.candidate_bins },
      'value shares in bins at stable\'s deciles', 'bin'));
  }
  return box;
}
function histogram(d, caption = 'predicted class shares', unit = 'class') {
  const st = d.stable_classes, ca = d.candidate_classes || [];
  const tot = (a) => a.reduce((x, y) => x + y, 0) || 1;
  const ts = tot(st), tc = tot(ca);
  // The classes either side predicted (a model may name many and predict few).
  const cls = [];
  for (let i = 0; i < Math.max(st.length, ca.length); i++) if ((st[i] || 0) + (ca[i] || 0) > 0) cls.push(i);
  const W = 48 * cls.length + 16, H = 90;
  const bars = [];
  cls.forEach((c, j) => {
    const a = (st[c] || 0) / ts, b = (ca[c] || 0) / tc;
    bars.push(s('rect', { class: 'f-stable', x: 12 + 48 * j, y: H - 14 - a * 70, width: 13, height: a * 70 }));
    bars.push(s('rect', { class: 'f-candidate', x: 26 + 48 * j, y: H - 14 - b * 70, width: 13, height: b * 70 }));
    bars.push(s('text', { x: 22 + 48 * j, y: H - 2 }, String(c)));
  });
  return h('figure', { class: 'hist' }, h('figcaption', {}, h('span', { text: `${caption}, PSI ${fmtNum(d.psi)}` }),
    h('span', {}, h('span', { class: 'key-stable', text: 'stable' }), ' / ', h('span', { class: 'key-candidate', text: 'candidate' }))),
  s('svg', { class: 'hist', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
    'aria-label': `${caption}: stable ${cls.map((c) => `${unit} ${c} ${st[c] || 0}`).join(', ')}; candidate ${cls.map((c) => `${unit} ${c} ${ca[c] || 0}`).join(', ')}; PSI ${fmtNum(d.psi)}` }, ...bars));
}
function gatesView(reports) {
  return h('ul', {}, ...(Array.isArray(reports) ? reports : []).map((g) => h('li', {},
    h('span', { class: 'badge ' + (g.passed ? 'ok' : 'bad'), text: g.passed ? 'passed' : 'failed' }), ' ',
    h('b', { text: 'gate ' + g.gate }), ': ', g.summary, numbersView(g.numbers))));
}

// ---- history and registry --------------------------------------------------------
function fillSelect(sel, values) {
  const cur = sel.value;
  const have = [...sel.options].map((o) => o.value);
  for (const v of values) if (!have.includes(v)) sel.append(h('option', { value: v, text: v }));
  sel.value = cur;
}
function renderHistory() {
  const rows = S.releases;
  fillSelect($('f-model'), [...new Set(rows.map((x) => x.release.model))]);
  fillSelect($('f-env'), [...new Set(rows.flatMap((x) => x.release.plan.envs.map((e) => e.name)))]);
  const fm = $('f-model').value, fe = $('f-env').value, fo = $('f-outcome').value;
  const shown = rows.filter(({ release: r }) => (!fm || r.model === fm) &&
    (!fe || r.plan.envs.some((e) => e.name === fe)) &&
    (!fo || (fo === 'active' ? !r.outcome : r.outcome && r.outcome.outcome === fo)));
  $('h-count').textContent = `${shown.length} of ${rows.length}`;
  $('h-table').tBodies[0].replaceChildren(...shown.map(({ release: r }) => {
    const o = r.outcome;
    return h('tr', { 'data-release': r.id, 'data-outcome': o ? o.outcome : 'active' },
      h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => select(r.id), 'aria-label': `show release ${r.id}`, text: '#' + r.id })),
      h('td', { text: r.model }), h('td', { text: 'v' + r.version }),
      h('td', { text: r.plan.envs.map((e) => e.name).join(', ') }),
      h('td', {}, o ? h('span', { class: 'badge ' + (o.outcome === 'succeeded' ? 'ok' : 'bad'), text: o.outcome }) : h('span', { class: 'badge warn', text: r.phase.phase.replace(/_/g, ' ') })),
      h('td', { class: 'num', text: o ? fmtDur(r.updated_ms - r.created_ms) : '' }),
      h('td', { text: o ? (o.reason || (o.by ? `superseded by release ${o.by}` : '')) : '' }),
      h('td', { text: r.trigger }),
      h('td', { class: 'num', text: fmtDate(r.created_ms) }));
  }));
}
function renderVersions() {
  const tb = $('v-table').tBodies[0];
  if (!S.versions) {
    tb.replaceChildren(h('tr', {}, h('td', { colspan: 6, text: S.versionsError ? S.versionsError.message : 'loading…' })));
    return;
  }
  tb.replaceChildren(...S.versions.versions.map((v) => h('tr', { 'data-version': v.version },
    h('td', { text: S.versions.model }), h('td', { text: 'v' + v.version }),
    h('td', { text: v.aliases.join(', ') }),
    h('td', {}, h('code', { text: v.digest || 'not yet known' })),
    h('td', {}, ...Object.entries(v.tags).filter(([k]) => k.startsWith('hoist')).map(([k, x]) => h('div', {}, h('code', { text: `${k}=${x}` })))),
    h('td', { class: 'num', text: fmtDate(v.created_at_ms) }))));
}

// ---- actions ---------------------------------------------------------------------
// Every action asks first, shows progress, and shows the API's answer as it is.
function confirmAction({ title, body, extra, call, done }) {
  const dlg = $('confirm');
  $('c-title').textContent = title;
  $('c-body').textContent = body;
  $('c-extra').replaceChildren(...(extra || []));
  $('c-progress').textContent = '';
  $('c-error').hidden = true; $('c-error').textContent = '';
  const ok = $('c-ok'); ok.disabled = false; ok.textContent = 'Confirm';
  $('c-form').onsubmit = async (ev) => {
    ev.preventDefault();
    ok.disabled = true;
    $('c-error').hidden = true;
    $('c-progress').textContent = 'sending…';
    let r;
    try { r = await call(); } catch (e) { r = { ok: false, status: 0, body: { error: { code: 'network', message: String(e) } } }; }
    if (r.ok) {
      $('c-progress').textContent = 'done';
      dlg.close();
      toast(done(r.body));
      refresh(null, true);
    } else {
      const e = r.body && r.body.error;
      $('c-progress').textContent = `refused (HTTP ${r.status})`;
      $('c-error').textContent = e ? `${e.code}: ${e.message}` : `HTTP ${r.status}`;
      $('c-error').hidden = false;
      ok.disabled = false; ok.textContent = 'Try again';
    }
  };
  $('c-cancel').onclick = () => dlg.close();
  dlg.showModal();
  (extra && extra.length ? dlg.querySelector('#c-extra input, #c-extra select') : $('c-cancel')).focus();
}
function approve(r) {
  confirmAction({ title: `Approve release #${r.id}?`, body: `v${r.version} starts receiving traffic in ${envName(r)}.`,
    call: () => api(`${modelPath(r.model)}/releases/${r.id}/approve`, { method: 'POST' }),
    done: () => `release #${r.id} approved` });
}
function promote(r, full) {
  confirmAction({ title: full ? `Promote release #${r.id} fully?` : `Promote release #${r.id} one step?`,
    body: full ? `v${r.version} takes all traffic in ${envName(r)}, skipping the remaining steps and pauses.` : `v${r.version} moves to the next step in ${envName(r)}.`,
    call: () => api(`${modelPath(r.model)}/releases/${r.id}/promote`, { method: 'POST', body: { full } }),
    done: () => `release #${r.id} promoted` + (full ? ' fully' : ' one step') });
}
function abort(r) {
  const reason = h('input', { id: 'c-reason', type: 'text', value: 'aborted from the dashboard', size: 40 });
  confirmAction({ title: `Abort release #${r.id}?`, body: `Traffic goes back to the stable version in ${envName(r)} at once.`,
    extra: [h('label', { for: 'c-reason', text: 'Reason ' }), reason],
    call: () => api(`${modelPath(r.model)}/releases/${r.id}/abort`, { method: 'POST', body: { reason: reason.value } }),
    done: () => `release #${r.id} aborted` });
}
function rollback(m, e) {
  const sel = h('select', { id: 'c-version' }, h('option', { value: '', text: 'the previous live version' }),
    ...((S.versions && S.versions.model === m.model ? S.versions.versions : []).map((v) =>
      h('option', { value: v.version, text: `v${v.version}` + (e.stable && e.stable.version === v.version ? ' (live now)' : '') }))));
  confirmAction({ title: `Roll back ${m.model} in ${e.name}?`, body: `The version chosen becomes live in ${e.name} at once, without steps.`,
    extra: [h('label', { for: 'c-version', text: 'To ' }), sel],
    call: () => api(`${modelPath(m.model)}/rollback`, { method: 'POST', body: sel.value ? { env: e.name, to: sel.value } : { env: e.name } }),
    done: (b) => `rolling back ${e.name} to v${b.version} (release #${b.id})` });
}

// ---- start -----------------------------------------------------------------------
function start() {
  $('auth').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $('token').value = '';
    renderMode();
    toast(t ? 'token kept for this tab (session storage)' : 'no token entered');
    if (t && S.readError) loadAll();
  });
  $('forget').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); renderMode(); $('token').focus(); });
  for (const id of ['f-model', 'f-env', 'f-outcome']) $(id).addEventListener('change', renderHistory);
  $('model-select').addEventListener('change', (ev) => showModel(ev.target.value));
  $('h-timeline').tabIndex = -1;
  setInterval(() => {
    for (const e of document.querySelectorAll('[data-until]')) e.textContent = fmtDur(+e.dataset.until - Date.now()) + ' left';
  }, 1000);
  loadAll().catch(() => {});
  follow();
}
start();
