// deltasync fleet dashboard (served by the hub at /, compiled into it from
// hub/dashboard/). Plain JavaScript: no framework, no build step, no request
// to any other origin. It asks for the hub's API token once, keeps it in
// sessionStorage (this tab only) and sends it as a bearer token to
//   GET /v1/fleet/agents  one filtered, sorted page of the fleet (the hub does
//                         the filtering, sorting and paging: never all agents)
//   GET /v1/fleet/rates   ingest and delivery rates of the last minutes
// every few seconds (?refresh=<seconds>, 1 to 60, default 5).
//
// Every value from the hub reaches the DOM as text (Node.append of a string,
// setAttribute), never as HTML: agent ids and hosts come from registrations.
'use strict';

const TOKEN_KEY = 'deltasync.token';
const refreshMs = clampInt(new URLSearchParams(location.search).get('refresh'), 1, 60, 5) * 1000;
const SORTABLE = { id: 'Agent', host: 'Host', state: 'State', last_beat: 'Last beat', quarantined: 'Quarantined' };

const view = { q: '', state: '', problems: false, sort: 'id', order: 'asc', offset: 0, limit: 50 };
let timer = null;
let generation = 0;  // the newest refresh; older answers are dropped
let lastPage = null;

class AuthError extends Error {}

function clampInt(text, lo, hi, fallback) {
  const n = Number.parseInt(text ?? '', 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
}

function $(id) { return document.getElementById(id); }

// el('td', {class: 'x'}, 'text', node): strings become text nodes.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child !== undefined && child !== null) node.append(child);
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// 850 ms -> "0.9 s", 95000 -> "1.6 min", ...
function duration(ms) {
  if (ms === null || ms === undefined) return '?';
  const s = ms / 1000;
  if (s < 10) return s.toFixed(1) + ' s';
  if (s < 120) return Math.round(s) + ' s';
  if (s < 7200) return (s / 60).toFixed(1) + ' min';
  if (s < 172800) return (s / 3600).toFixed(1) + ' h';
  return (s / 86400).toFixed(1) + ' d';
}

function rate(perSecond) {
  return perSecond >= 100 ? Math.round(perSecond).toLocaleString() : perSecond.toFixed(1);
}

async function api(path) {
  const response = await fetch(path, {
    headers: { Authorization: 'Bearer ' + sessionStorage.getItem(TOKEN_KEY) },
    cache: 'no-store',
  });
  if (response.status === 401) throw new AuthError('token refused');
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.error?.message ?? 'HTTP ' + response.status);
  return body;
}

function fleetQuery() {
  const p = { sort: view.sort, order: view.order, offset: view.offset, limit: view.limit };
  if (view.q) p.q = view.q;
  if (view.state) p.state = view.state;
  if (view.problems) p.problems = '1';
  return Object.entries(p).map(([name, value]) => name + '=' + encodeURIComponent(value)).join('&');
}

function setStatus(text, bad) {
  $('status').textContent = text;
  $('status').className = bad ? 'error' : '';
}

async function refresh() {
  const mine = ++generation;
  clearTimeout(timer);
  try {
    const [page, rates] = await Promise.all([api('/v1/fleet/agents?' + fleetQuery()), api('/v1/fleet/rates')]);
    if (mine !== generation) return;
    if (page.agents.length === 0 && view.offset > 0 && page.matched > 0) {
      view.offset = Math.floor((page.matched - 1) / view.limit) * view.limit;  // the fleet shrank under this page
      refresh();
      return;
    }
    lastPage = page;
    renderSummary(page);
    renderTable(page);
    renderChart($('chart-ingest'), rates.points.map((p) => p.ingest_records));
    renderChart($('chart-delivery'), rates.points.map((p) => p.delivered_changes));
    setStatus('updated ' + new Date().toLocaleTimeString() + ', every ' + refreshMs / 1000 + ' s', false);
  } catch (e) {
    if (mine !== generation) return;
    if (e instanceof AuthError) {
      showLogin('The hub refused this token.');
      return;
    }
    setStatus('hub unreachable: ' + e.message + ' (retrying)', true);
  }
  timer = setTimeout(refresh, refreshMs);
}

function renderSummary(page) {
  const chip = (label, count, state, cls) =>
    el('button', { type: 'button', class: 'chip ' + (count > 0 ? cls : ''), 'data-state': state }, label + ' ' + count);
  const chips = ['live', 'suspect', 'dead', 'retired'].map((s) => chip(s, page.counts[s], s, 'chip-' + s));
  chips.push(el('span', { class: 'chip ' + (page.problems > 0 ? 'chip-dead' : '') }, 'need attention ' + page.problems));
  chips.push(el('span', { class: 'chip ' + (page.breaches > 0 ? 'chip-dead' : '') },
                'freshness breaches ' + page.breaches));
  $('summary').replaceChildren(el('span', {}, page.total + ' agents: '), ...chips);
  for (const b of $('summary').querySelectorAll('button')) {
    b.addEventListener('click', () => {
      view.state = view.state === b.dataset.state ? '' : b.dataset.state;
      $('state').value = view.state;
      view.offset = 0;
      refresh();
    });
  }
}

function renderColumns(types) {
  const cells = Object.entries(SORTABLE).map(([key, label]) => {
    const arrow = view.sort === key ? (view.order === 'asc' ? ' \u25B2' : ' \u25BC') : '';
    const th = el('th', { class: 'sortable', 'data-sort': key, title: 'sort by ' + label.toLowerCase() }, label + arrow);
    th.addEventListener('click', () => {
      view.order = view.sort === key && view.order === 'asc' ? 'desc' : 'asc';
      view.sort = key;
      view.offset = 0;
      refresh();
    });
    return th;
  });
  for (const t of types) {
    cells.push(el('th', { 'data-type': t.name }, t.name, el('small', {}, 'objective ' + duration(t.freshness_objective_ms))));
  }
  $('columns').replaceChildren(...cells);
}

// One type of one agent: lag, freshness against the objective, delivery
// (held back, awaiting a snapshot) and its quarantined entries.
function typeCell(name, t) {
  if (!t) return el('td', { class: 'none', 'data-type': name }, '\u2014');
  const lines = [];
  const lag = t.lag_versions === null ? 'no change yet'
    : t.lag_versions === 0 ? 'caught up' : 'lag ' + t.lag_versions + ' v, ' + duration(t.lag_ms);
  lines.push(el('div', {}, (t.partition === '*' ? '' : t.partition + ': ') + 'v' + t.version + ', ' + lag));
  lines.push(el('div', { class: t.freshness_breach ? 'breach' : 'fresh' },
                (t.freshness_breach ? 'BREACH ' : 'fresh ') + duration(t.staleness_ms) + ' / ' +
                duration(t.freshness_objective_ms)));
  if (t.held_back) lines.push(el('div', { class: 'warn' }, 'held back (schema differs)'));
  if (t.awaiting_snapshot) lines.push(el('div', { class: 'warn' }, 'awaiting snapshot'));
  // null: the agent reports its quarantine as a total only (the Quarantined column).
  if (t.quarantined > 0) lines.push(el('div', { class: 'warn quarantined' }, t.quarantined + ' quarantined'));
  if (!t.consumer && t.note) lines.push(el('div', { class: 'note' }, t.note));
  return el('td', { 'data-type': name, 'data-breach': String(t.freshness_breach),
                    class: t.freshness_breach ? 'cell-breach' : '' }, ...lines);
}

function renderTable(page) {
  renderColumns(page.types);
  const rows = page.agents.map((a) => {
    const beat = a.last_beat > 0 ? duration(Math.max(0, page.now - a.last_beat)) + ' ago' : 'never';
    const state = el('td', { class: 'state' }, a.state);
    if (a.health !== 'ok') state.append(el('div', { class: 'warn', title: a.last_error }, a.health));
    return el('tr', { 'data-agent': a.id, 'data-state': a.state, class: 'state-' + a.state },
              el('td', { class: 'id' }, a.id),
              el('td', {}, a.host),
              state,
              el('td', {}, beat),
              el('td', { class: a.quarantined > 0 ? 'warn' : '' }, a.quarantined),
              ...page.types.map((t) => typeCell(t.name, a.types[t.name])));
  });
  if (rows.length === 0) {
    rows.push(el('tr', {}, el('td', { colspan: 5 + page.types.length, class: 'none' }, 'no agent matches')));
  }
  $('fleet').tBodies[0].replaceChildren(...rows);
  const first = page.matched === 0 ? 0 : page.offset + 1;
  const last = Math.min(page.matched, page.offset + page.agents.length);
  $('page-info').textContent = first + '\u2013' + last + ' of ' + page.matched + ' matching';
  $('prev').disabled = page.offset === 0;
  $('next').disabled = last >= page.matched;
}

// A sparkline of per-second rates, newest on the right.
function renderChart(target, values) {
  const width = 300, height = 70, top = 14;
  const peak = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => (i * step).toFixed(1) + ',' + (height - (v / peak) * (height - top)).toFixed(1));
  const now = values.length ? values[values.length - 1] : 0;
  target.replaceChildren(
    svg('polyline', { points: points.join(' '), class: 'line' }),
    svg('text', { x: 2, y: 11, class: 'label' }, 'now ' + rate(now) + '/s, peak ' + rate(Math.max(0, ...values)) + '/s'),
  );
}

function showLogin(message) {
  clearTimeout(timer);
  ++generation;
  sessionStorage.removeItem(TOKEN_KEY);
  $('main').hidden = true;
  $('forget').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('token').focus();
}

function showFleet() {
  $('login').hidden = true;
  $('main').hidden = false;
  $('forget').hidden = false;
  refresh();
}

function start() {
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value);
    $('token').value = '';
    showFleet();
  });
  $('forget').addEventListener('click', () => showLogin(''));
  let typing = null;
  $('q').addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => { view.q = $('q').value.trim(); view.offset = 0; refresh(); }, 300);
  });
  $('filters').addEventListener('submit', (e) => e.preventDefault());
  $('state').addEventListener('change', () => { view.state = $('state').value; view.offset = 0; refresh(); });
  $('problems').addEventListener('change', () => { view.problems = $('problems').checked; view.offset = 0; refresh(); });
  $('limit').addEventListener('change', () => { view.limit = Number($('limit').value); view.offset = 0; refresh(); });
  $('prev').addEventListener('click', () => { view.offset = Math.max(0, view.offset - view.limit); refresh(); });
  $('next').addEventListener('click', () => {
    if (lastPage && view.offset + view.limit < lastPage.matched) view.offset += view.limit;
    refresh();
  });
  if (sessionStorage.getItem(TOKEN_KEY)) showFleet(); else showLogin('');
}

start();
