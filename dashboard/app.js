// Ferrox dashboard: plain JavaScript, no build step. The session is an HttpOnly cookie set by
// POST /dashboard/login; this script never sees the token after submitting it.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const MAX_RECENT = 500;
const HISTORY = 120;

const state = {
  ticks: [],          // last HISTORY updates (charts)
  last: null,         // the latest update
  recent: [],         // recent requests, newest last
  ws: null,
  retry: 0,
  view: 'overview',
  plugins: [],        // plugin names known to the admin API
  routes: [],
  consumers: [],
};

// ---------- helpers ----------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style') e.style.cssText = v; // CSSOM: allowed under the page's CSP
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function us(v) {
  if (v === null || v === undefined) return '–';
  if (v < 1000) return `${v} µs`;
  if (v < 1e6) return `${(v / 1000).toFixed(v < 1e4 ? 2 : 1)} ms`;
  return `${(v / 1e6).toFixed(2)} s`;
}

function statusBadge(s) {
  return el('span', { class: `badge s${Math.floor(s / 100)}`, text: String(s) });
}

function decisionKind(d) {
  return (d || '').split(/[ (]/)[0];
}

async function api(method, path, body) {
  const opts = { method, headers: { accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['content-type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(`/dashboard/api${path}`, opts);
  if (r.status === 401) { showLogin(); throw new Error('session ended: sign in again'); }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    const msg = data && data.message ? data.message : `${r.status} ${r.statusText}`;
    const err = new Error(data && data.path && !msg.includes(data.path) ? `${data.path}: ${msg}` : msg);
    err.status = r.status;
    err.body = data;
    throw err;
  }
  return data;
}

// ---------- login ----------

function showLogin() {
  $('#app').hidden = true;
  $('#login').hidden = false;
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  $('#token').focus();
}

function showApp() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  connect();
  show(state.view);
  loadStatus();
}

// Version, config version and store health of this instance, every 10 s.
async function loadStatus() {
  clearTimeout(state.statusTimer);
  if ($('#app').hidden) return;
  try {
    const s = await api('GET', '/status');
    const health = (h) => `${h.kind}${h.healthy ? '' : ' DOWN'}`;
    const version = s.config_version == null || s.config_version === s.applied_version
      ? `config v${s.applied_version}` : `config v${s.applied_version} (store v${s.config_version})`;
    $('#instance').textContent = `ferrox ${s.version} · ${version} · store ${health(s.store)} · state ${health(s.state)}`;
    $('#instance').classList.toggle('error', !s.store.healthy || !s.state.healthy);
  } catch (e) {
    $('#instance').textContent = e.message;
  }
  state.statusTimer = setTimeout(loadStatus, 10000);
}

// ---------- instances ----------

// Instances of the cluster that report in (GET /instances), every 2 s while the overview shows.
async function loadInstances() {
  clearTimeout(state.instancesTimer);
  if ($('#app').hidden) return;
  if (state.view === 'overview') {
    try {
      renderInstances(await api('GET', '/instances'));
    } catch (e) {
      $('#instances-note').textContent = e.message;
    }
  }
  state.instancesTimer = setTimeout(loadInstances, 2000);
}

function duration(secs) {
  if (secs < 60) return `${secs}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m ${secs % 60}s`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
  return `${Math.floor(secs / 86400)}d ${Math.floor((secs % 86400) / 3600)}h`;
}

function renderInstances(list) {
  const up = list.instances.filter((i) => i.status === 'up').length;
  const lagging = list.instances.filter((i) => i.status === 'up' && i.lagging).length;
  $('#instances-note').textContent = `${up} up of ${list.instances.length} · store ${list.store} at config v${list.config_version}`
    + (lagging ? ` · ${lagging} lagging` : '') + (list.complete ? '' : ` · ${list.error}`);
  $('#instances-note').classList.toggle('error', !list.complete);
  $('#tbl-instances tbody').replaceChildren(...list.instances.map((i) => el('tr', {
    class: i.status === 'up' ? null : 'gone',
    dataset: { id: i.id, status: i.status, self: String(i.self) },
  },
  el('td', { title: i.id }, `${i.hostname} · pid ${i.pid}`, i.self ? el('span', { class: 'badge self', text: 'this' }) : null),
  el('td', {}, el('span', { class: `badge st-${i.status}`, text: i.status })),
  el('td', { text: i.version }),
  el('td', {
    class: i.lagging ? 'lagging config' : 'config',
    title: i.lagging ? `runs v${i.applied_version}; the store is at v${list.config_version}` : 'runs the store\'s current config',
    text: i.lagging ? `v${i.applied_version} (store v${list.config_version})` : `v${i.applied_version}`,
  }),
  el('td', { text: duration(i.uptime_seconds) }),
  el('td', { text: i.status === 'up' ? String(i.requests_per_second) : '–' }),
  el('td', { text: String(i.requests_total) }),
  el('td', { text: String(i.responses_5xx) }),
  el('td', { text: i.status === 'up' ? String(i.in_flight) : '–' }),
  el('td', { class: 'match', text: `${i.proxy_addr} / ${i.admin_addr}` }),
  el('td', { class: 'small', text: i.stopped_at ? `stopped ${new Date(i.stopped_at).toLocaleTimeString()}` : i.last_seen ? new Date(i.last_seen).toLocaleTimeString() : '–' }))));
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('#token');
  $('#login-error').textContent = '';
  const r = await fetch('/dashboard/login', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: input.value }),
  });
  input.value = '';
  if (r.ok) { showApp(); return; }
  let msg = `${r.status}`;
  try { msg = (await r.json()).message || msg; } catch { /* plain */ }
  $('#login-error').textContent = msg;
});

$('#logout').addEventListener('click', async () => {
  await fetch('/dashboard/logout', { method: 'POST', credentials: 'same-origin' });
  showLogin();
});

// ---------- live feed ----------

function connect() {
  if (state.ws) return;
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/dashboard/ws`);
  state.ws = ws;
  ws.onopen = () => { state.retry = 0; setConn(true); };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.type === 'hello') {
      state.ticks = msg.history || [];
      state.recent = msg.recent || [];
      state.last = state.ticks[state.ticks.length - 1] || null;
    } else {
      state.ticks.push(msg);
      if (state.ticks.length > HISTORY) state.ticks.shift();
      state.last = msg;
      if (msg.recent) {
        state.recent.push(...msg.recent);
        if (state.recent.length > MAX_RECENT) state.recent.splice(0, state.recent.length - MAX_RECENT);
      }
    }
    render();
  };
  ws.onclose = async () => {
    state.ws = null;
    setConn(false);
    const r = await fetch('/dashboard/session', { credentials: 'same-origin' });
    if (r.status === 401) { showLogin(); return; }
    state.retry = Math.min(state.retry + 1, 5);
    setTimeout(connect, 500 * state.retry);
  };
}

function setConn(on) {
  const c = $('#conn');
  c.textContent = on ? 'live' : 'offline';
  c.className = `conn ${on ? 'on' : 'off'}`;
}

function render() {
  if (state.view === 'overview') renderOverview();
  if (state.view === 'requests' && !$('#f-pause').checked) renderRequests();
  if (state.view === 'upstreams') renderUpstreamHealth();
}

// ---------- overview ----------

function renderOverview() {
  const t = state.last;
  if (!t) return;
  $('#kpi-rps').textContent = t.rps;
  $('#kpi-p50').textContent = us(t.p50_us);
  $('#kpi-p99').textContent = us(t.p99_us);
  $('#kpi-classes').textContent = `${t.classes['2xx']} / ${t.classes['4xx']} / ${t.classes['5xx']}`;
  $('#kpi-rl').textContent = `${t.rate_limited} / ${t.rate_limited_total}`;
  const hit = (t.cache && t.cache.hit) || 0;
  const hitTotal = (t.cache_total && t.cache_total.hit) || 0;
  $('#kpi-cache').textContent = `${hit} / ${hitTotal}`;
  $('#kpi-total').textContent = t.requests_total;
  $('#dropped').textContent = t.dropped
    ? `${t.dropped} requests in the last second were not sampled (load above the dashboard's buffer); Prometheus counts them all.`
    : '';

  const rows = (id, items, cells) => {
    const tb = $(`${id} tbody`);
    tb.replaceChildren(...items.map((it) => el('tr', { dataset: { name: it.name } }, ...cells(it).map((c) => el('td', {}, c)))));
  };
  rows('#tbl-routes', t.routes, (r) => [r.name, r.upstream || '', r.rps, r.classes['2xx'], r.classes['4xx'],
    r.classes['5xx'], us(r.p50_us), us(r.p99_us), us(r.upstream_p99_us)]);
  rows('#tbl-upstreams', t.upstreams, (u) => [u.name, u.rps, u.classes['2xx'], u.classes['4xx'], u.classes['5xx'],
    us(u.p99_us), targetsCell(u.targets || [])]);
  rows('#tbl-plugins', t.plugins, (p) => [p.name, p.calls, us(p.avg_us), us(p.max_us), p.responded, p.failures]);

  const xs = state.ticks;
  drawChart($('#chart-rps'), xs, [
    { label: '2xx', color: '#3fb950', get: (x) => x.classes['2xx'] },
    { label: '3xx', color: '#4aa3ff', get: (x) => x.classes['3xx'] },
    { label: '4xx', color: '#d29922', get: (x) => x.classes['4xx'] },
    { label: '5xx', color: '#f85149', get: (x) => x.classes['5xx'] },
  ], (v) => String(Math.round(v)));
  drawChart($('#chart-lat'), xs, [
    { label: 'p50', color: '#4aa3ff', get: (x) => (x.p50_us == null ? null : x.p50_us / 1000) },
    { label: 'p99', color: '#a371f7', get: (x) => (x.p99_us == null ? null : x.p99_us / 1000) },
  ], (v) => v.toFixed(v < 10 ? 2 : 0));
}

function targetsCell(targets) {
  return el('span', {}, targets.map((t) => el('span', { class: 'target', title: `${t.in_flight} in flight` },
    el('i', { class: `dot${t.healthy ? '' : ' down'}`, title: t.healthy ? 'healthy' : 'unhealthy' }),
    t.label, el('span', { class: `badge b-${t.breaker}`, text: t.breaker }))));
}

function drawChart(canvas, ticks, series, fmt) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600;
  const h = canvas.clientHeight || 180;
  if (canvas.width !== w * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 44; const bottom = 18; const top = 8; const right = 8;
  let max = 0;
  for (const x of ticks) for (const s of series) { const v = s.get(x); if (v != null && v > max) max = v; }
  max = max <= 0 ? 1 : max * 1.15;
  g.font = '11px system-ui';
  g.fillStyle = '#8898a8';
  g.strokeStyle = '#2a3541';
  for (let i = 0; i <= 3; i++) {
    const y = top + (h - top - bottom) * (i / 3);
    g.beginPath(); g.moveTo(left, y); g.lineTo(w - right, y); g.stroke();
    g.fillText(fmt(max * (1 - i / 3)), 4, y + 4);
  }
  g.fillText(`${HISTORY} s`, left, h - 4);
  g.fillText('now', w - right - 22, h - 4);
  const xAt = (i) => left + (w - left - right) * ((HISTORY - ticks.length + i) / (HISTORY - 1));
  const yAt = (v) => top + (h - top - bottom) * (1 - v / max);
  series.forEach((s, si) => {
    g.strokeStyle = s.color; g.lineWidth = 1.6; g.beginPath();
    let pen = false;
    ticks.forEach((x, i) => {
      const v = s.get(x);
      if (v == null) { pen = false; return; }
      if (pen) g.lineTo(xAt(i), yAt(v)); else { g.moveTo(xAt(i), yAt(v)); pen = true; }
    });
    g.stroke();
    g.fillStyle = s.color;
    g.fillText(s.label, left + 8 + si * 40, top + 10);
  });
}

// ---------- recent requests ----------

function requestMatches(r) {
  const route = $('#f-route').value;
  const status = $('#f-status').value;
  const text = $('#f-text').value.trim().toLowerCase();
  if (route && r.route !== route) return false;
  if (status && String(Math.floor(r.status / 100)) !== status) return false;
  if (text) {
    const hay = [r.path, r.id, r.method, r.route, r.upstream, r.target, r.error, String(r.status),
      ...r.filters.map((f) => `${f.plugin} ${f.decision}`)].join(' ').toLowerCase();
    if (!hay.includes(text)) return false;
  }
  return true;
}

function renderRequests() {
  const sel = $('#f-route');
  const known = new Set([...sel.options].map((o) => o.value));
  const routes = new Set(state.recent.map((r) => r.route).filter(Boolean));
  if (state.last) state.last.routes.forEach((r) => routes.add(r.name));
  for (const name of [...routes].sort()) {
    if (!known.has(name)) sel.append(el('option', { value: name, text: name }));
  }
  const shown = state.recent.filter(requestMatches).slice(-200).reverse();
  $('#req-count').textContent = `${shown.length} shown of ${state.recent.length} kept`;
  $('#tbl-requests tbody').replaceChildren(...shown.map((r) => el('tr', {
    dataset: { seq: r.seq }, onclick: () => openExplain(r),
  },
  el('td', { text: new Date(r.at_ms).toLocaleTimeString() }),
  el('td', { text: r.method }),
  el('td', { class: 'path', text: r.path, title: r.path }),
  el('td', { text: r.route || '(no route)' }),
  el('td', {}, statusBadge(r.status)),
  el('td', { text: us(r.micros) }),
  el('td', { text: r.filters.length ? r.filters.filter((f) => f.phase === 'request').map((f) => f.plugin).join(' → ') : '' }),
  el('td', { class: 'path', text: r.id }))));
}

for (const id of ['#f-route', '#f-status', '#f-text']) $(id).addEventListener('input', renderRequests);

// ---------- explain view ----------

function openExplain(r) {
  $('#explain-title').replaceChildren(`${r.method} `, el('span', { class: 'match', text: r.path }), ' ', statusBadge(r.status));
  const req = r.filters.filter((f) => f.phase === 'request');
  const resp = r.filters.filter((f) => f.phase === 'response');
  const filterUs = r.filters.reduce((a, f) => a + f.micros, 0);
  const upstreamUs = r.upstream_micros || 0;
  const other = Math.max(0, r.micros - filterUs - upstreamUs);
  const answeredBy = req.find((f) => /^(respond|failed)/.test(f.decision) || f.decision.includes('cache hit'));

  const facts = el('dl', { class: 'facts' },
    el('dt', { text: 'request id' }), el('dd', { text: r.id }),
    el('dt', { text: 'time' }), el('dd', { text: new Date(r.at_ms).toISOString() }),
    el('dt', { text: 'route' }), el('dd', { text: r.route || '(no route matched)' }),
    el('dt', { text: 'upstream' }), el('dd', { text: r.upstream ? `${r.upstream}${r.target ? ` → ${r.target}` : ''}` : '–' }),
    el('dt', { text: 'attempts' }), el('dd', { text: String(r.attempts) }),
    el('dt', { text: 'answered by' }), el('dd', {
      text: answeredBy ? `${answeredBy.plugin} (${answeredBy.decision})`
        : r.error ? `gateway (ferrox-error: ${r.error})` : r.upstream_micros != null ? 'upstream' : 'gateway',
    }),
    el('dt', { text: 'total' }), el('dd', { text: `${us(r.micros)} = filters ${us(filterUs)} + upstream ${us(upstreamUs)} + gateway ${us(other)}` }),
  );

  // Waterfall: steps laid out in the order they ran on a shared µs scale.
  const steps = [];
  let at = 0;
  for (const f of req) { steps.push({ kind: 'filter', f, start: at, dur: f.micros }); at += f.micros; }
  if (r.upstream_micros != null) {
    steps.push({ kind: 'upstream', start: at, dur: upstreamUs });
    at += upstreamUs;
  }
  for (const f of resp) { steps.push({ kind: 'filter', f, start: at, dur: f.micros }); at += f.micros; }
  const scale = Math.max(r.micros, at, 1);
  const pct = (v) => `${((v / scale) * 100).toFixed(3)}%`;

  const wf = el('div', { class: 'wf', id: 'waterfall' });
  wf.append(el('div', { class: 'axis' }, el('span', { text: '0' }), el('span', { text: us(Math.round(scale / 2)) }), el('span', { text: us(scale) })));
  for (const s of steps) {
    if (s.kind === 'filter') {
      const kind = decisionKind(s.f.decision);
      wf.append(el('div', { class: 'wf-row step', dataset: { plugin: s.f.plugin, phase: s.f.phase } },
        el('div', { class: 'wf-label' }, el('span', { class: 'phase', text: s.f.phase }), s.f.plugin),
        el('div', { class: 'wf-track' }, el('div', { class: `wf-bar ${kind}`, style: `left:${pct(s.start)};width:${pct(s.dur)}` })),
        el('div', { class: 'wf-us', text: us(s.f.micros) }),
        el('div', { class: 'wf-detail' },
          el('span', { class: `decision ${kind}`, text: s.f.decision }),
          s.f.calls.length ? ' · host services: ' : ' · no host services',
          s.f.calls.map((c) => el('span', { class: 'chip', text: c })))));
    } else {
      wf.append(el('div', { class: 'wf-row step', dataset: { phase: 'upstream' } },
        el('div', { class: 'wf-label' }, el('span', { class: 'phase', text: 'upstream' }), r.target || r.upstream || ''),
        el('div', { class: 'wf-track' }, el('div', { class: 'wf-bar upstream', style: `left:${pct(s.start)};width:${pct(s.dur)}` })),
        el('div', { class: 'wf-us', text: us(upstreamUs) }),
        el('div', { class: 'wf-detail' }, `${r.upstream} → ${r.target || '?'}`, r.attempts > 1 ? ` after ${r.attempts - 1} retr${r.attempts > 2 ? 'ies' : 'y'}` : '')));
    }
  }
  wf.append(el('div', { class: 'wf-row' },
    el('div', { class: 'wf-label' }, el('span', { class: 'phase', text: 'total' }), 'status ', statusBadge(r.status)),
    el('div', { class: 'wf-track' }, el('div', { class: 'wf-bar total', style: `left:0;width:${pct(r.micros)}` })),
    el('div', { class: 'wf-us', text: us(r.micros) })));
  const legend = el('div', { class: 'legend' },
    ...[['continue / done', 'var(--ok)'], ['respond', 'var(--warn)'], ['failed', 'var(--bad)'], ['skipped', 'var(--muted)'], ['upstream', 'var(--info)']]
      .map(([t, c]) => el('span', {}, el('i', { style: `background:${c}` }), t)));
  const note = el('p', { class: 'muted small', text: 'Bars are placed in the order the steps ran; the gap to the total is the gateway\'s own work (routing, proxying, streaming the head).' });
  const none = r.filters.length ? null : el('p', { class: 'muted', text: 'No filters ran on this request.' });
  $('#explain-body').replaceChildren(...[facts, el('h3', { text: 'Timeline' }), wf, legend, none, note].filter(Boolean));
  $('#explain').hidden = false;
}

$('#explain-close').addEventListener('click', () => { $('#explain').hidden = true; });
document.addEventListener('keydown', (e) => { if (e.key === 'Escape') $('#explain').hidden = true; });

// ---------- routes and filters ----------

async function loadRoutes() {
  const box = $('#routes-list');
  try {
    const [routes, plugins] = await Promise.all([api('GET', '/routes'), api('GET', '/plugins').catch(() => [])]);
    state.routes = routes;
    state.plugins = (plugins || []).map((p) => (typeof p === 'string' ? p : p.name)).filter(Boolean);
    box.replaceChildren(...routes.map(routeCard));
  } catch (e) {
    box.replaceChildren(el('p', { class: 'error', text: e.message }));
  }
}

function describeMatch(m) {
  if (!m) return '';
  const parts = [];
  if (m.host) parts.push(`host ${m.host}`);
  if (m.methods && m.methods.length) parts.push(m.methods.join(','));
  if (m.path) parts.push(`= ${m.path}`);
  if (m.path_prefix) parts.push(`${m.path_prefix}*`);
  return parts.join(' ');
}

function routeCard(route) {
  const filters = route.filters || [];
  const err = el('p', { class: 'error', role: 'alert' });
  const run = async (fn) => {
    err.textContent = '';
    try { await fn(); await loadRoutes(); } catch (e) { err.textContent = e.message; }
  };
  const base = `/routes/${encodeURIComponent(route.name)}/filters`;
  const list = el('ol', { class: 'pipeline' }, filters.map((f, i) => {
    const editor = el('div', { class: 'editor', hidden: true });
    const li = el('li', { dataset: { plugin: f.plugin } },
      el('div', {},
        el('span', { class: 'filter-name', text: f.plugin }),
        f.on_error && f.on_error !== 'closed' ? el('span', { class: 'muted small', text: ` on_error: ${f.on_error}` }) : null,
        el('div', { class: 'filter-cfg', text: JSON.stringify(f.config ?? {}) })),
      el('div', { class: 'actions' },
        el('button', { class: 'ghost small', title: 'move up', disabled: i === 0, onclick: () => run(() => api('PATCH', `${base}/${i}`, { position: i - 1 })) }, '↑'),
        el('button', { class: 'ghost small', title: 'move down', disabled: i === filters.length - 1, onclick: () => run(() => api('PATCH', `${base}/${i}`, { position: i + 1 })) }, '↓'),
        el('button', { class: 'ghost small', onclick: () => { editor.hidden = !editor.hidden; } }, 'configure'),
        el('button', { class: 'danger small', onclick: () => run(() => api('DELETE', `${base}/${i}`)) }, 'detach')),
      editor);
    const ta = el('textarea', { 'aria-label': `config of ${f.plugin}` });
    ta.value = JSON.stringify(f.config ?? {}, null, 2);
    const edErr = el('p', { class: 'error', role: 'alert' });
    editor.append(ta, el('button', {
      onclick: async () => {
        edErr.textContent = '';
        let config;
        try { config = JSON.parse(ta.value); } catch (e) { edErr.textContent = `not JSON: ${e.message}`; return; }
        try { await api('PATCH', `${base}/${i}`, { config }); await loadRoutes(); } catch (e) { edErr.textContent = e.message; }
      },
    }, 'Save'), edErr);
    return li;
  }));

  // Attach form.
  const plugin = el('input', { list: 'plugin-names', placeholder: 'plugin', 'aria-label': 'plugin', required: true });
  const position = el('select', { 'aria-label': 'position' },
    el('option', { value: '', text: 'at the end' }),
    filters.map((f, i) => el('option', { value: String(i), text: `before #${i + 1} ${f.plugin}` })));
  const cfg = el('textarea', { placeholder: 'the filter\'s config, as JSON', 'aria-label': 'filter config' });
  cfg.value = '{}';
  const timeout = el('input', { placeholder: 'timeout (5ms)', 'aria-label': 'timeout', size: 8 });
  const attach = el('form', {
    class: 'attach',
    onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      let config;
      try { config = JSON.parse(cfg.value || '{}'); } catch (e) { err.textContent = `config is not JSON: ${e.message}`; return; }
      const body = { plugin: plugin.value.trim(), config };
      if (timeout.value.trim()) body.timeout = timeout.value.trim();
      const at = position.value !== '' ? `?position=${position.value}` : '';
      await run(() => api('POST', `${base}${at}`, body));
    },
  }, plugin, el('div', {}, position, timeout), cfg, el('button', { type: 'submit' }, 'Attach'));

  return el('div', { class: 'card route', dataset: { route: route.name } },
    el('div', { class: 'route-head' },
      el('span', { class: 'name', text: route.name }),
      el('span', { class: 'match', text: describeMatch(route.match) }),
      el('span', { class: 'muted', text: `→ ${route.upstream}` })),
    filters.length ? list : el('p', { class: 'muted small', text: 'No filters: requests go straight to the upstream.' }),
    el('h3', { text: 'Attach a filter' }), attach, err,
    pluginDatalist());
}

function pluginDatalist() {
  if ($('#plugin-names')) return null;
  const builtin = ['key-auth', 'jwt-auth', 'rate-limit', 'transform', 'cache'];
  const names = [...new Set([...builtin, ...state.plugins])];
  return el('datalist', { id: 'plugin-names' }, names.map((n) => el('option', { value: n })));
}

$('#routes-reload').addEventListener('click', loadRoutes);

// ---------- upstreams ----------

async function loadUpstreams() {
  const box = $('#upstreams-list');
  try {
    const ups = await api('GET', '/upstreams');
    box.replaceChildren(...ups.map((u) => el('div', { class: 'card', dataset: { upstream: u.name } },
      el('div', { class: 'route-head' }, el('span', { class: 'name', text: u.name }),
        el('span', { class: 'muted', text: `balance: ${u.balance || 'round_robin'}` }),
        u.health_check ? el('span', { class: 'muted', text: `active checks: ${u.health_check.path || ''}` }) : el('span', { class: 'muted', text: 'passive health only (breaker)' })),
      el('div', { class: 'targets', dataset: { upstream: u.name } }, (u.targets || []).map((t) => el('span', { class: 'target', text: t }))))));
    renderUpstreamHealth();
  } catch (e) {
    box.replaceChildren(el('p', { class: 'error', text: e.message }));
  }
}

function renderUpstreamHealth() {
  if (!state.last) return;
  for (const u of state.last.upstreams) {
    const box = document.querySelector(`.targets[data-upstream="${CSS.escape(u.name)}"]`);
    if (box) box.replaceChildren(targetsCell(u.targets || []));
  }
}

$('#upstreams-reload').addEventListener('click', loadUpstreams);

// ---------- consumers ----------

async function loadConsumers() {
  const box = $('#consumers-list');
  try {
    const cs = await api('GET', '/consumers');
    box.replaceChildren(...cs.map(consumerCard));
  } catch (e) {
    box.replaceChildren(el('p', { class: 'error', text: e.message }));
  }
}

function consumerCard(c) {
  const err = el('p', { class: 'error', role: 'alert' });
  const keys = c.keys || [];
  return el('div', { class: 'card', dataset: { consumer: c.name } },
    el('div', { class: 'route-head' }, el('span', { class: 'name', text: c.name }),
      el('span', { class: 'muted', text: `${keys.length} key${keys.length === 1 ? '' : 's'}, ${(c.jwt || []).length} JWT credential(s)` })),
    el('ul', {}, keys.map((k, i) => el('li', {},
      el('code', { text: typeof k === 'string' ? k : (k.id || JSON.stringify(k)) }), ' ',
      el('button', {
        class: 'danger small',
        onclick: async () => {
          err.textContent = '';
          const id = typeof k === 'string' ? i : (k.id ?? i);
          try { await api('DELETE', `/consumers/${encodeURIComponent(c.name)}/keys/${encodeURIComponent(id)}`); await loadConsumers(); } catch (e) { err.textContent = e.message; }
        },
      }, 'revoke')))),
    el('div', { class: 'inline' },
      el('button', {
        onclick: async () => {
          err.textContent = '';
          try {
            const made = await api('POST', `/consumers/${encodeURIComponent(c.name)}/keys`, {});
            const key = made && made.key;
            $('#new-key-consumer').textContent = c.name;
            $('#new-key-value').textContent = key || JSON.stringify(made);
            $('#new-key').hidden = false;
            await loadConsumers();
          } catch (e) { err.textContent = e.message; }
        },
      }, 'New key'),
      el('button', {
        class: 'danger small',
        onclick: async () => {
          err.textContent = '';
          try { await api('DELETE', `/consumers/${encodeURIComponent(c.name)}`); await loadConsumers(); } catch (e) { err.textContent = e.message; }
        },
      }, 'delete consumer')),
    err);
}

$('#consumer-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('#consumer-error').textContent = '';
  try {
    await api('POST', '/consumers', { name: $('#consumer-name').value.trim() });
    $('#consumer-name').value = '';
    await loadConsumers();
  } catch (e) { $('#consumer-error').textContent = e.message; }
});

$('#new-key-dismiss').addEventListener('click', () => {
  $('#new-key').hidden = true;
  $('#new-key-value').textContent = '';
});

// ---------- navigation ----------

function show(view) {
  state.view = view;
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.view === view);
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== `view-${view}`;
  if (view === 'routes') loadRoutes();
  if (view === 'upstreams') loadUpstreams();
  if (view === 'consumers') loadConsumers();
  if (view === 'overview') loadInstances();
  render();
}

for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => show(b.dataset.view));

(async () => {
  const r = await fetch('/dashboard/session', { credentials: 'same-origin' });
  if (r.ok) showApp(); else showLogin();
})();
