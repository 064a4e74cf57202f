// The web pages appsvc serves (see web_server.h): plain HTML and a small
// inline script each, no build step. Text from the API is inserted with
// textContent only (never innerHTML), so owner-entered text cannot inject
// markup.
#ifndef SPHERE_APPSVC_WEB_PAGES_H_
#define SPHERE_APPSVC_WEB_PAGES_H_

namespace contoso::appsvc {

// kLoginPage: {{LOGIN_CSRF}} is replaced by the login form's CSRF token
// (64 hex digits), the same value as the sphere_login_csrf cookie.
inline constexpr char kLoginPage[] = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>Contoso DW100 cloud: log in</title>
<meta name="login-csrf" content="{{LOGIN_CSRF}}">
<style>body{font-family:sans-serif;margin:1.5em}.err{color:#a00}</style>
</head><body>
<h1>Contoso DW100 cloud</h1>
<form id="login">
<p><label>Account <input id="user" autocomplete="username" maxlength="64"></label></p>
<p><label>Password <input id="password" type="password"
  autocomplete="current-password" maxlength="256"></label></p>
<button id="submit">Log in</button></form>
<p class="err" id="error"></p>
<script>
document.getElementById('login').addEventListener('submit', async ev => {
  ev.preventDefault();
  const err = document.getElementById('error'); err.textContent = '';
  try {
    const r = await fetch('/login', {method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({user: document.getElementById('user').value,
        password: document.getElementById('password').value,
        csrf: document.querySelector('meta[name="login-csrf"]').content})});
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || r.status);
    location.href = j.next;
  } catch (e) { err.textContent = e.message; }
});
</script></body></html>
)HTML";

inline constexpr char kForbiddenPage[] = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>Not allowed</title></head>
<body><h1>This page is for Contoso support staff</h1>
<p><a href="/owner">My dishwasher</a></p></body></html>
)HTML";

inline constexpr char kSupportPage[] = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>Contoso support</title>
<style>
body{font-family:sans-serif;margin:1.5em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}
tr.anomaly td{background:#fdd}.err{color:#a00}
</style></head>
<body>
<h1>Contoso support: DW100 fleet</h1>
<p>Logged in as <b id="who"></b> <button id="logout">Log out</button></p>
<p id="status">loading…</p>
<table id="fleet"><thead><tr><th>device</th><th>state</th>
<th>open anomalies</th><th>rinse agent</th><th>last seen</th></tr></thead>
<tbody></tbody></table>
<div id="device" hidden>
<h2>Device <span id="device-id"></span></h2>
<p>OS <span id="os-version"></span>; apps <span id="app-version"></span>;
last attestation <span id="last-attestation"></span></p>
<p class="err" id="sphere-error"></p>
<h3>Drying temperature per cycle (&deg;C)</h3>
<svg id="chart" width="600" height="200" style="border:1px solid #ccc"></svg>
<h3>Open anomalies</h3><ul id="device-anomalies"></ul>
<h3>Service requests</h3><ul id="service-requests"></ul>
<h3>Reservations</h3><ul id="reservations"></ul>
<h3>Timeline</h3>
<table id="timeline"><thead><tr><th>time</th><th>source</th><th>kind</th>
<th>summary</th></tr></thead><tbody></tbody></table>
</div>
<script>
function el(tag, text) { const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text); return e; }
function list(id, items) { const ul = document.getElementById(id);
  ul.replaceChildren(...(items || []).map(t => el('li', t))); }
function when(ms) { return ms ? new Date(Number(ms)).toISOString() : '-'; }
async function getJson(url) { const r = await fetch(url);
  if (r.status === 401) { location.href = '/login'; throw new Error('login required'); }
  const j = await r.json(); if (!r.ok) throw new Error(j.error || r.status);
  return j; }
let session = null;
async function logout() {
  await fetch('/logout', {method: 'POST', headers: {'X-CSRF-Token': session.csrf}});
  location.href = '/login'; }
document.getElementById('logout').addEventListener('click', logout);
function chart(values, baseline) {
  const svg = document.getElementById('chart'); svg.replaceChildren();
  if (!values.length) return;
  const lo = Math.min(baseline - 20, ...values), hi = Math.max(baseline + 20, ...values);
  const x = i => 10 + i * 580 / Math.max(1, values.length - 1);
  const y = v => 190 - (v - lo) * 180 / (hi - lo);
  const ns = 'http://www.w3.org/2000/svg';
  const base = document.createElementNS(ns, 'line');
  base.setAttribute('x1', 0); base.setAttribute('x2', 600);
  base.setAttribute('y1', y(baseline)); base.setAttribute('y2', y(baseline));
  base.setAttribute('stroke', '#999'); base.setAttribute('stroke-dasharray', '4');
  svg.appendChild(base);
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', values.map((v, i) => x(i) + ',' + y(v)).join(' '));
  line.setAttribute('fill', 'none'); line.setAttribute('stroke', '#c00');
  line.setAttribute('stroke-width', 2); line.id = 'chart-line';
  svg.appendChild(line);
}
async function showDevice(id) {
  document.getElementById('device').hidden = false;
  document.getElementById('device-id').textContent = id;
  const d = await getJson('/api/devices/' + id);
  list('device-anomalies', d.open_anomalies);
  list('service-requests', d.insights.service_requests);
  list('reservations', d.insights.reservations);
  chart(d.cycle_drying_means, d.baseline_c);
  const t = await getJson('/api/devices/' + id + '/timeline');
  document.getElementById('os-version').textContent = t.os_version || '?';
  document.getElementById('app-version').textContent = t.app_version || '?';
  document.getElementById('last-attestation').textContent = t.last_attestation || '?';
  document.getElementById('sphere-error').textContent = t.sphere_error;
  const body = document.querySelector('#timeline tbody');
  body.replaceChildren(...t.entries.map(e => { const tr = el('tr');
    tr.append(el('td', when(e.time_unix_ms)), el('td', e.source),
              el('td', e.kind), el('td', e.summary)); return tr; }));
  document.body.dataset.deviceLoaded = id;
}
async function load() {
  try {
    session = await getJson('/api/session');
    document.getElementById('who').textContent = session.user;
    const f = await getJson('/api/devices');
    const body = document.querySelector('#fleet tbody');
    body.replaceChildren(...f.devices.map(d => {
      const tr = el('tr'); tr.className = d.state; tr.dataset.device = d.device_id;
      const a = el('a', d.device_id.substring(0, 16) + '…'); a.href = '#' + d.device_id;
      const td = el('td'); td.append(a);
      tr.append(td, el('td', d.state), el('td', d.open_anomalies.join(', ')),
                el('td', Math.round(d.rinse_agent_level_pct) + '%'),
                el('td', when(d.last_seen_unix_ms)));
      return tr; }));
    document.getElementById('status').textContent = f.devices.length + ' dishwashers';
    const id = location.hash.substring(1);
    if (id) await showDevice(id);
    document.body.dataset.loaded = 'yes';
  } catch (e) { document.getElementById('status').textContent = 'error: ' + e.message; }
}
window.addEventListener('hashchange', load);
load();
</script></body></html>
)HTML";

inline constexpr char kOwnerPage[] = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>My Contoso dishwasher</title>
<style>body{font-family:sans-serif;margin:1.5em}.err{color:#a00}</style>
</head><body>
<h1>My DW100 dishwasher</h1>
<p>Logged in as <b id="who"></b> <button id="logout">Log out</button></p>
<form id="pick" hidden><label>Device id <input id="device-input" size="70"></label>
<button>Show</button></form>
<p class="err" id="error"></p>
<div id="mine" hidden>
<p>Cycles run: <b id="cycles"></b></p>
<p>Rinse agent level: <b id="rinse"></b></p>
<p id="offer" hidden>Rinse agent is low.
<button id="reorder">Reorder rinse agent</button> <span id="order-result"></span></p>
<h2>Notifications</h2><ul id="notifications"></ul>
<h2>Request service</h2>
<textarea id="description" rows="3" cols="60" maxlength="1024"></textarea><br>
<button id="request-service">Request service</button>
<span id="request-result"></span>
<h2>My service requests</h2><ul id="service-requests"></ul>
</div>
<script>
function el(tag, text) { const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text); return e; }
function list(id, items) { document.getElementById(id)
  .replaceChildren(...(items || []).map(t => el('li', t))); }
let session = null;
async function call(url, body) {
  const r = await fetch(url, body === undefined ? {} : {method: 'POST',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf},
    body: JSON.stringify(body)});
  if (r.status === 401) { location.href = '/login'; throw new Error('login required'); }
  const j = await r.json(); if (!r.ok) throw new Error(j.error || r.status);
  return j; }
let device = '';
document.getElementById('logout').addEventListener('click', async () => {
  await fetch('/logout', {method: 'POST', headers: {'X-CSRF-Token': session.csrf}});
  location.href = '/login'; });
async function show() {
  const err = document.getElementById('error'); err.textContent = '';
  if (!session) {
    try { session = await call('/api/session'); }
    catch (e) { err.textContent = e.message; return; }
    document.getElementById('who').textContent = session.user;
    // An owner sees their own dishwasher; support staff pick one.
    device = session.role === 'owner' ? session.device_id
        : (new URLSearchParams(location.search).get('device') || '');
    document.getElementById('pick').hidden = session.role === 'owner';
  }
  if (!device) return;
  document.getElementById('device-input').value = device;
  try {
    const d = await call('/api/devices/' + device);
    document.getElementById('mine').hidden = false;
    document.getElementById('cycles').textContent = d.cycles_completed;
    document.getElementById('rinse').textContent = Math.round(d.rinse_agent_level_pct) + '%';
    document.getElementById('offer').hidden = !d.open_reorder_offer;
    document.getElementById('offer').dataset.offer = d.open_reorder_offer;
    list('notifications', d.insights.notifications);
    list('service-requests', d.insights.service_requests);
    document.body.dataset.loaded = 'yes';
  } catch (e) { err.textContent = e.message; }
}
document.getElementById('pick').addEventListener('submit', ev => {
  ev.preventDefault(); device = document.getElementById('device-input').value.trim();
  history.replaceState(null, '', '?device=' + device); show(); });
document.getElementById('request-service').addEventListener('click', async () => {
  const out = document.getElementById('request-result');
  try {
    const r = await call('/api/devices/' + device + '/service-request',
      {description: document.getElementById('description').value});
    out.textContent = 'request ' + r.request_id + ' recorded';
    await show();
  } catch (e) { out.textContent = 'error: ' + e.message; }
});
document.getElementById('reorder').addEventListener('click', async () => {
  const out = document.getElementById('order-result');
  try {
    const r = await call('/api/devices/' + device + '/order',
      {offer_id: document.getElementById('offer').dataset.offer});
    out.textContent = 'order ' + r.order_id + ' placed';
  } catch (e) { out.textContent = 'error: ' + e.message; }
});
show();
</script></body></html>
)HTML";

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_WEB_PAGES_H_
