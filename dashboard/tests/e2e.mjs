// Browser test of the dashboard in headless Chromium, started by host/tests/it/dashboard.rs,
// which runs the gateway, an upstream and background traffic. Environment:
//   FERROX_ADMIN  http://127.0.0.1:PORT of the admin listener
//   FERROX_PROXY  http://127.0.0.1:PORT of the proxy
//   FERROX_TOKEN  the admin token
//   SCREENSHOTS   folder for screenshots
// Exits non-zero with a message on the first failed expectation.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const admin = process.env.FERROX_ADMIN;
const proxy = process.env.FERROX_PROXY;
const token = process.env.FERROX_TOKEN;
const shots = process.env.SCREENSHOTS || 'dashboard-screenshots';
mkdirSync(shots, { recursive: true });

const step = (m) => console.log(`e2e: ${m}`);
function expect(cond, message) {
  if (!cond) throw new Error(`expectation failed: ${message}`);
}
async function waitFor(what, fn, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const consoleErrors = [];
// Answers such as the 401 before login and the deliberate 422 are logged by the browser as
// failed loads; anything else (script errors, CSP violations) fails the test.
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));
const shot = (name, fullPage = true) => page.screenshot({ path: join(shots, `${name}.png`), fullPage });

try {
  // 1. Login: a wrong token is refused, the right one opens the app.
  await page.goto(`${admin}/dashboard`);
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.fill('#token', 'not-the-token');
  await page.click('#login-submit');
  await waitFor('login error', async () => (await page.textContent('#login-error')).includes('does not accept'));
  await shot('01-login-refused');
  step('wrong token refused');
  await page.fill('#token', token);
  await page.click('#login-submit');
  await page.waitForSelector('#app', { state: 'visible' });
  await waitFor('live feed', async () => (await page.textContent('#conn')) === 'live');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'ferrox_session');
  expect(session && session.httpOnly && session.sameSite === 'Strict' && session.path === '/dashboard',
    `session cookie flags: ${JSON.stringify(session)}`);
  expect(await page.evaluate(() => document.cookie) === '', 'the session cookie is not readable from script');
  await waitFor('instance status', async () => (await page.textContent('#instance')).includes('config v'));
  step('logged in, live feed connected');

  // 2. Live numbers move while the test sends traffic.
  const total = async () => Number((await page.textContent('#kpi-total')).trim()) || 0;
  const first = await waitFor('requests counted', async () => { const v = await total(); return v > 0 ? v : 0; });
  const later = await waitFor('the count to move', async () => { const v = await total(); return v > first ? v : 0; });
  await waitFor('requests/s above 0', async () => Number(await page.textContent('#kpi-rps')) > 0);
  await waitFor('route api in the table', async () => (await page.$('#tbl-routes tr[data-name="api"]')) !== null);
  await waitFor('breaker state shown', async () => (await page.textContent('#tbl-upstreams')).includes('closed'));
  await waitFor('filter stats', async () => (await page.$('#tbl-plugins tr[data-name="rate-limit"]')) !== null);
  await page.waitForTimeout(1200); // one more update for a fuller chart
  await shot('02-overview');
  step(`live numbers moved: ${first} → ${later}`);

  // Instances panel: this instance is listed, up, on the store's config version.
  const status = await (await fetch(`${admin}/status`, { headers: { authorization: `Bearer ${token}` } })).json();
  const me = await waitFor('this instance in the Instances panel', () => page.$('#tbl-instances tbody tr[data-self="true"]'));
  expect((await me.getAttribute('data-status')) === 'up', 'this instance is up');
  const meText = await me.textContent();
  expect(meText.includes('this') && meText.includes(status.version), `instance row names itself and its version: ${meText}`);
  const cfg = await me.$eval('td.config', (td) => ({ text: td.textContent, lagging: td.classList.contains('lagging') }));
  expect(cfg.text === `v${status.applied_version}` && !cfg.lagging, `config version shown, not lagging: ${JSON.stringify(cfg)}`);
  expect((await page.textContent('#instances-note')).includes('1 up of 1'), 'one instance up');
  await page.locator('#instances-card').screenshot({ path: join(shots, '02b-instances.png') });
  step(`instances panel lists this instance: ${meText.trim()}`);

  // 3. Recent requests: filter, then open one request's explain view.
  await page.click('#tabs button[data-view="requests"]');
  await page.selectOption('#f-route', 'api');
  await page.fill('#f-text', '/api/');
  await waitFor('a request on route api', () => page.$('#tbl-requests tbody tr'));
  await page.check('#f-pause'); // hold the list still while reading it
  const rowsText = await page.textContent('#tbl-requests tbody');
  expect(!rowsText.includes('/plain/'), 'the route filter hides other routes');
  await shot('03-requests', false);
  await page.locator('#tbl-requests tbody tr').first().click();
  await page.waitForSelector('#explain', { state: 'visible' });
  const rl = await page.waitForSelector('#waterfall .step[data-plugin="rate-limit"][data-phase="request"]');
  expect((await rl.textContent()).includes('continue'), 'rate-limit continued');
  expect((await rl.$$('.chip')).length > 0, 'rate-limit lists the host services it called');
  await page.waitForSelector('#waterfall .step[data-plugin="transform"][data-phase="response"]');
  await page.waitForSelector('#waterfall .step[data-phase="upstream"]');
  await shot('04-explain', false);
  await page.click('#explain-close');
  step('explain view shows each filter, its decision, µs, host calls and the upstream');

  // 4. Attach a filter through the UI: the filter's own validation message first, then success.
  await page.click('#tabs button[data-view="routes"]');
  const card = '.route[data-route="plain"]';
  await page.waitForSelector(card);
  await page.fill(`${card} input[aria-label="plugin"]`, 'transform');
  await page.fill(`${card} textarea[aria-label="filter config"]`, '{"response": {"no_such_op": 1}}');
  await page.click(`${card} form.attach button[type="submit"]`);
  const invalid = await waitFor('the validation message', async () => {
    const t = await page.textContent(`${card} > p.error`);
    return t && t.length > 0 ? t : null;
  });
  expect(invalid.includes('transform'), `the message names the filter: ${invalid}`);
  await shot('05-attach-invalid');
  step(`invalid config refused inline: ${invalid}`);
  await page.fill(`${card} textarea[aria-label="filter config"]`, '{"response": {"set_headers": {"x-dashboard": "attached"}}}');
  await page.fill(`${card} input[aria-label="timeout"]`, '500ms');
  await page.click(`${card} form.attach button[type="submit"]`);
  await page.waitForSelector(`${card} li[data-plugin="transform"]`);
  await shot('06-attached');
  const seen = await waitFor('the attached filter on a proxied request', async () => {
    const r = await fetch(`${proxy}/plain/check`);
    return r.headers.get('x-dashboard') === 'attached';
  }, 10000);
  expect(seen, 'header from the attached filter');
  step('filter attached through the UI takes effect');

  // Configure, reorder and detach through the UI.
  await page.click(`${card} li[data-plugin="transform"] >> text=configure`);
  await page.fill(`${card} li[data-plugin="transform"] textarea`, '{"response": {"set_headers": {"x-dashboard": "reconfigured"}}}');
  await page.click(`${card} li[data-plugin="transform"] >> text=Save`);
  await waitFor('the new config on a proxied request', async () => {
    const r = await fetch(`${proxy}/plain/check`);
    return r.headers.get('x-dashboard') === 'reconfigured';
  }, 10000);
  const api = '.route[data-route="api"]';
  await page.click(`${api} li[data-plugin="rate-limit"] button[title="move down"]`);
  await waitFor('rate-limit moved after transform', async () => {
    const order = await page.$$eval(`${api} ol.pipeline > li`, (lis) => lis.map((li) => li.dataset.plugin));
    return order.join(',') === 'transform,rate-limit';
  });
  await page.click(`${card} li[data-plugin="transform"] >> text=detach`);
  await waitFor('the pipeline of plain to be empty', async () => (await page.$(`${card} li[data-plugin]`)) === null);
  await waitFor('the detached filter gone from proxied requests', async () => {
    const r = await fetch(`${proxy}/plain/check`);
    return r.status === 200 && r.headers.get('x-dashboard') === null;
  }, 10000);
  await shot('07-reordered-detached');
  step('filter configured, reordered and detached through the UI');

  // 5. Consumers: a new key is shown once.
  await page.click('#tabs button[data-view="consumers"]');
  await page.fill('#consumer-name', 'dash-user');
  await page.click('#consumer-form button[type="submit"]');
  await page.waitForSelector('[data-consumer="dash-user"]');
  await page.click('[data-consumer="dash-user"] >> text=New key');
  await page.waitForSelector('#new-key', { state: 'visible' });
  const key = (await page.textContent('#new-key-value')).trim();
  expect(key.startsWith('fxk_'), `plaintext key shown once: ${key}`);
  await shot('08-new-key');
  await page.click('#new-key-dismiss');
  expect((await page.textContent('#new-key-value')) === '', 'the key is gone from the page once dismissed');
  step('consumer created, key shown once');

  // 6. Logout ends the session.
  await page.click('#logout');
  await page.waitForSelector('#login-form', { state: 'visible' });
  const after = await page.evaluate(async () => (await fetch('/dashboard/session')).status);
  expect(after === 401, `session gone after logout (${after})`);
  expect(consoleErrors.length === 0, `no script errors: ${consoleErrors.join(' | ')}`);
  step('ok');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(`e2e failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
