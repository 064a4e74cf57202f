// Headless-Chromium test of appsvc's web pages (issue 13): Debian's
// chromium driven by puppeteer-core (never downloads a browser).
//
//   node appsvc_pages_test.js PATH/TO/appsvc/web_fixture
//
// The fixture serves the real pages over HTTPS on the real core with an
// injected too-hot drying anomaly and three web accounts (support; owners
// ada and bob) with random passwords it prints. Checks: without a session
// the support page sends the browser to /login; support logs in, the support
// page shows the anomaly in the fleet list and on the device page (with the
// chart, and the timeline's Sphere attestation and update rows); owner bob logs in and lands on his own dishwasher, cannot read
// ada's, submits a service request and a reorder; support logs in again and
// sees the request. Exits 0 on success, 1 with the reason otherwise; bounded by its own
// timeouts (no sleeps: it waits on page state).
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const puppeteer = require('puppeteer-core');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = 30000;

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exitCode = 1;
  throw new Error(msg);
}

async function startFixture(binary, dir) {
  const child = spawn(binary, ['--dir=' + dir], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: child.stdout });
  const line = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('fixture did not start')), TIMEOUT_MS);
    rl.once('line', l => { clearTimeout(timer); resolve(l); });
    child.once('exit', code => reject(new Error('fixture exited ' + code)));
  });
  return { child, info: JSON.parse(line) };
}

async function main() {
  const binary = process.argv[2];
  if (!binary) fail('usage: node appsvc_pages_test.js PATH/TO/web_fixture');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'appsvc-browser-'));
  const { child, info } = await startFixture(binary, path.join(tmp, 'fixture'));
  const base = 'https://127.0.0.1:' + info.port;
  let browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      ignoreHTTPSErrors: true,  // the fixture's certificate is self-signed
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
             '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync',
             '--user-data-dir=' + path.join(tmp, 'profile')],
      timeout: TIMEOUT_MS,
    });
    const page = await browser.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);

    async function logIn(user, password, landing) {
      await page.goto(base + '/login', { waitUntil: 'load' });
      await page.type('#user', user);
      await page.type('#password', password);
      await Promise.all([page.waitForNavigation({ waitUntil: 'load' }),
                         page.click('#submit')]);
      if (!page.url().endsWith(landing)) fail(`${user} landed on ${page.url()}`);
    }
    async function logOut() {
      await Promise.all([page.waitForNavigation({ waitUntil: 'load' }),
                         page.click('#logout')]);
      if (!page.url().endsWith('/login')) fail('logout landed on ' + page.url());
    }

    // 0. No session: the support page sends the browser to the login page,
    //    and the API answers 401.
    await page.goto(base + '/support', { waitUntil: 'load' });
    if (!page.url().endsWith('/login')) fail('no login redirect: ' + page.url());
    const noSession = await page.evaluate(async () => (await fetch('/api/devices')).status);
    if (noSession !== 401) fail('/api/devices without a session: ' + noSession);
    const wrong = await page.evaluate(async () => {
      const csrf = document.querySelector('meta[name="login-csrf"]').content;
      const r = await fetch('/login', { method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user: 'support', password: 'wrong', csrf }) });
      return r.status; });
    if (wrong !== 401) fail('wrong password answered ' + wrong);
    console.log('ok: no session -> /login; API 401; wrong password 401');

    // 1. Support page: fleet with the anomaly.
    await logIn('support', info.accounts.support, '/support');
    await page.waitForSelector('body[data-loaded="yes"]');
    const row = await page.$eval(`tr[data-device="${info.anomalous}"]`,
      tr => ({ cls: tr.className, text: tr.textContent }));
    if (row.cls !== 'anomaly' || !row.text.includes('drying-too-hot')) {
      fail('support page does not show the anomaly: ' + JSON.stringify(row));
    }
    console.log('ok: support page lists the drying-too-hot anomaly');

    // 2. Device page: open anomaly, chart, timeline.
    await page.goto(base + '/support#' + info.anomalous, { waitUntil: 'load' });
    await page.waitForSelector(`body[data-device-loaded="${info.anomalous}"]`);
    const anomalies = await page.$eval('#device-anomalies', e => e.textContent);
    if (!anomalies.includes('drying-too-hot')) fail('device page: ' + anomalies);
    const points = await page.$eval('#chart-line', e => e.getAttribute('points'));
    if (points.trim().split(' ').length !== 6) fail('chart points: ' + points);
    const timeline = await page.$eval('#timeline', e => e.textContent);
    if (!timeline.includes('remote diagnostics requested')) fail('timeline: ' + timeline);
    // Sphere's history joins the timeline: attestation and update rows.
    const rows = await page.$$eval('#timeline tbody tr', trs =>
      trs.map(tr => Array.from(tr.children).map(td => td.textContent)));
    const attestRows = rows.filter(r => r[1] === 'sphere' && r[2] === 'attestation');
    const updateRows = rows.filter(r => r[1] === 'sphere' && r[2] === 'update');
    if (!attestRows.some(r => r[3].includes('attested UP_TO_DATE'))) {
      fail('no attestation row: ' + JSON.stringify(rows));
    }
    if (!attestRows.some(r => r[3].includes('attestation refused UNAUTHENTICATED'))) {
      fail('no refused-attestation row: ' + JSON.stringify(rows));
    }
    if (updateRows.length !== 1 || !updateRows[0][3].includes('update INSTALLED: app:dw100 v2')) {
      fail('update rows: ' + JSON.stringify(updateRows));
    }
    const sphereError = await page.$eval('#sphere-error', e => e.textContent);
    if (sphereError !== '') fail('sphere_error: ' + sphereError);
    console.log('ok: device page shows the anomaly, 6-cycle chart and a timeline ' +
                'with attestation and update rows');

    // 3. Owner page: bob sees his own dishwasher only, requests service.
    await logOut();
    const description = 'Dishes come out wet ' + Date.now();
    await logIn('bob', info.accounts.bob, '/owner');
    await page.waitForSelector('body[data-loaded="yes"]');
    const who = await page.$eval('#who', e => e.textContent);
    if (who !== 'bob') fail('owner page logged in as ' + who);
    const other = await page.evaluate(async id =>
      (await fetch('/api/devices/' + id)).status, info.anomalous);
    if (other !== 403) fail("bob reading ada's dishwasher got " + other);
    const fleet = await page.evaluate(async () => (await fetch('/api/devices')).status);
    if (fleet !== 403) fail('bob reading the fleet got ' + fleet);
    const noCsrf = await page.evaluate(async id => (await fetch(
      '/api/devices/' + id + '/service-request', { method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ description: 'forged' }) })).status, info.owner);
    if (noCsrf !== 403) fail('POST without CSRF token got ' + noCsrf);
    console.log("ok: owner bob cannot read ada's dishwasher or the fleet; POST without CSRF 403");
    const rinse = await page.$eval('#rinse', e => e.textContent);
    const offerHidden = await page.$eval('#offer', e => e.hidden);
    if (rinse !== '12%' || offerHidden) fail(`owner page rinse ${rinse} offer hidden ${offerHidden}`);
    await page.type('#description', description);
    await page.click('#request-service');
    await page.waitForFunction(() =>
      document.getElementById('request-result').textContent.includes('recorded'));
    await page.click('#reorder');
    await page.waitForFunction(() =>
      document.getElementById('order-result').textContent.includes('placed'));
    console.log('ok: owner page submitted a service request and a reorder');

    // 4. The request appears on the support page.
    await logOut();
    await logIn('support', info.accounts.support, '/support');
    await page.goto(base + '/support#' + info.owner, { waitUntil: 'load' });
    await page.waitForSelector(`body[data-device-loaded="${info.owner}"]`);
    const requests = await page.$eval('#service-requests', e => e.textContent);
    if (!requests.includes(description)) fail('support page requests: ' + requests);
    if (requests.includes('forged')) fail('the CSRF-less request was stored: ' + requests);
    console.log('ok: the service request appears on the support page');
  } finally {
    if (browser) await browser.close();
    child.stdin.end();
    await new Promise(resolve => child.once('exit', resolve));
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log('PASS appsvc pages');
}

main().catch(e => {
  if (!process.exitCode) console.error('FAIL: ' + (e && e.stack || e));
  process.exit(1);
});
