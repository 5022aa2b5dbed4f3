// The web console in a real browser: the distribution's Chromium, headless, driven by
// playwright-core, against a cloudfn served on 127.0.0.1 by tests/console.rs, which prepares
// the world (apps wxA/wxB of subject Acme, wxC of another; env prod owned by wxA with
// cloudbase_auth, echo and fail_error) and passes it in the environment:
//   CONSOLE_URL  http://127.0.0.1:PORT (the admin listener)
//   ADMIN_TOKEN  the admin token
//   UPLOAD_WASM  a component to deploy through the form
//   SHOTS        where each page's screenshot goes
//   CHROMIUM     the browser binary
// Every step asserts what the page shows; the first failure exits non-zero with its step.
'use strict';
const { chromium } = require('playwright-core');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');

const base = process.env.CONSOLE_URL;
const token = process.env.ADMIN_TOKEN;
const shots = process.env.SHOTS;
fs.mkdirSync(shots, { recursive: true });

let step = 'start';
// A bound on the whole run, whatever hangs.
setTimeout(() => {
  console.error(`console.js timed out at step "${step}"`);
  process.exit(2);
}, 240000).unref();
const t0 = Date.now();
function log(s) {
  step = s;
  process.stderr.write(`[console.js +${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}\n`);
}

// Calls through the admin API (as an operator's script would), to give the pages data;
// `identity` makes it a call from another app's user, through the sharing checks.
async function invoke(name, event = {}, identity = {}) {
  const r = await fetch(`${base}/v1/envs/prod/functions/${name}/invoke`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ event, identity }),
  });
  assert.equal(r.status, 200, `invoke ${name}`);
  return r.json();
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

async function login(page) {
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/login$/, 'an anonymous visit goes to the login form');
  await page.fill('input[name=token]', token);
  await page.click('button:has-text("Sign in")');
  await page.waitForURL(`${base}/console`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    // As root in a container, and quiet on a machine without outside network.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    // Any browser-side error (a script error, a CSP refusal) fails the run.
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    // (A refused form answers 4xx on purpose; the browser reports each such page load.)
    page.on('console', (m) => {
      if (m.type() === 'error' && !/responded with a status of 4\d\d/.test(m.text())) pageErrors.push(m.text());
    });
    const loads = [];
    page.on('response', (r) => loads.push([r.status(), new URL(r.url()).pathname]));

    log('login: a wrong token is refused, the right one signs in');
    await page.goto(`${base}/console`);
    await page.waitForURL(/\/console\/login$/);
    await shot(page, '01-login');
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button:has-text("Sign in")');
    assert.match(await page.textContent('.error'), /wrong admin token/);
    await login(page);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'cloudfn_console');
    assert.ok(session, 'a session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.ok(session.expires > Date.now() / 1000, 'the cookie expires');
    assert.ok(!page.url().includes(token), 'no token in the URL');

    log('overview');
    await invoke('echo', { warm: 1 });
    await page.reload();
    const prodRow = page.locator('#envs tr[data-env=prod]');
    assert.equal(await prodRow.locator('td').nth(1).textContent(), 'wxA');
    assert.equal(await prodRow.locator('td').nth(2).textContent(), '4');
    assert.ok(Number(await prodRow.locator('.calls').textContent()) >= 1, 'calls in the last hour');
    assert.equal(await prodRow.locator('svg.spark').count(), 1, 'a sparkline');
    await shot(page, '02-overview');

    log('env: deploy with the upload form, twice');
    await page.click('#envs a:has-text("prod")');
    await page.waitForURL(`${base}/console/envs/prod`);
    // With JavaScript on, htmx sends the upload as an XHR (whose upload progress fills the
    // form's progress bar) and the server answers with HX-Redirect.
    const uploads = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/console/envs/prod/deploy')) uploads.push(r.headers()['hx-request']);
    });
    for (const expected of ['1', '2']) {
      await page.fill('input[name=name]', 'hello');
      await page.setInputFiles('input[name=wasm]', process.env.UPLOAD_WASM);
      await page.fill('textarea[name=vars]', `GREETING=hi v${expected}`);
      await page.fill('input[name=timeout]', '2.5');
      await page.click('#deploy-form button[type=submit]');
      await page.waitForURL(/\/console\/envs\/prod\/functions\/hello\?done=deployed/);
      assert.equal(await page.textContent('#active-version'), expected);
      await page.goto(`${base}/console/envs/prod`);
    }
    assert.deepEqual(uploads, ['true', 'true'], 'uploads went through htmx');
    log('env: a bad upload is refused with the reason, nothing lost');
    await page.fill('input[name=name]', 'hello');
    await page.setInputFiles('input[name=wasm]', { name: 'junk.wasm', mimeType: 'application/wasm', buffer: Buffer.from('not wasm') });
    await page.click('#deploy-form button[type=submit]');
    await page.waitForSelector('#deploy-result .error');
    assert.match(await page.textContent('#deploy-result .error'), /wasm|component/i);
    // The upload reported its progress to the form's bar (which hides when done).
    assert.equal(await page.getAttribute('#deploy-progress', 'hidden'), '');
    assert.equal(await page.evaluate(() => document.getElementById('deploy-progress').value), 100);
    assert.equal(await page.textContent('#functions tr[data-function=hello] .active'), '2');
    await shot(page, '03-env');

    log('function: versions, variables, limits; roll back with a confirmation');
    await page.click('#functions a:has-text("hello")');
    // Variables are masked until asked for.
    assert.equal(await page.textContent('#vars dd'), '••••••');
    assert.equal(await page.locator('text=hi v2').count(), 0);
    await page.click('#reveal-values');
    await page.waitForURL(/reveal=1$/);
    assert.equal(await page.textContent('#vars dd'), 'hi v2');
    assert.match(await page.textContent('#timeout'), /^2\.5 s$/, 'seconds, as the CLI');
    await shot(page, '04-function');
    await page.click('a:has-text("Roll back to 1")');
    await page.waitForURL(/\/rollback\?to=1$/);
    await shot(page, '05-rollback-confirm');
    await page.click('button:has-text("Roll back to version 1")');
    await page.waitForURL(/done=rolledback/);
    assert.equal(await page.textContent('#active-version'), '1');
    assert.equal(await page.textContent('#vars dd'), '••••••');
    await page.click('#reveal-values');
    await page.waitForURL(/reveal=1$/);
    assert.equal(await page.textContent('#vars dd'), 'hi v1');
    assert.equal((await invoke('hello', { x: 1 })).error, null, 'the rolled-back version answers');

    log('sharing: the seed\'s flow as wxA');
    await page.click('nav a:has-text("Sharing")');
    await page.selectOption('select[name=app]', 'wxA');
    await page.click('button:has-text("Show")');
    assert.equal(await page.textContent('#sharing-state'), 'off');
    // With sharing off, no share form is offered: the page says to turn it on first.
    assert.match(await page.textContent('#add-share-off'), /Sharing of wxA is off: turn it on/);
    assert.equal(await page.locator('#add-share form').count(), 0);
    await page.click('button:has-text("Turn sharing on")');
    await page.waitForURL(/done=sharing-on/);
    assert.equal(await page.textContent('#sharing-state'), 'on');
    const peers = await page.locator('#add-share select[name=to] option').allTextContents();
    assert.deepEqual(peers, ['wxB'], 'only apps of the same subject are offered');
    await page.selectOption('#add-share select[name=to]', 'wxB');
    await page.check('#add-share input[name=env][value=prod]');
    // As on the platform, every permission is ticked by default.
    assert.equal(await page.locator('#add-share input[name=perm]:checked').count(), 3);
    await page.click('#add-share button:has-text("Share")');
    await page.waitForURL(/done=shared/);
    const byMe = page.locator('#shared-by-me tr[data-to=wxB]');
    assert.match(await byMe.locator('li[data-env=prod]').textContent(),
      /functions:invoke, functions:read, functions:deploy/);
    await shot(page, '06-sharing-by-me');

    log('sharing: configure envs: narrow a share, add an env (+), remove one (−)');
    await byMe.locator('a:has-text("Configure envs")').click();
    await page.waitForURL(/\/console\/sharing\/configure\?app=wxA&to=wxB$/);
    const prodShare = page.locator('#configured tr[data-env=prod]');
    await prodShare.locator('input[name=perm][value="functions:deploy"]').uncheck();
    await prodShare.locator('button:has-text("Save")').click();
    await page.waitForURL(/configure\?app=wxA&to=wxB&done=shared/);
    assert.equal(await prodShare.locator('input[name=perm]:checked').count(), 2);
    await page.selectOption('#add-env select[name=env]', 'dev');
    await page.click('#add-env button:has-text("Add")');
    await page.waitForURL(/done=shared/);
    assert.equal(await page.locator('#configured tr[data-env]').count(), 2);
    await shot(page, '07-sharing-configure');
    await prodShare.locator('button:has-text("Remove prod")').click();
    await page.waitForURL(/done=removed/);
    assert.deepEqual(await page.locator('#configured tr[data-env]').evaluateAll(
      (rows) => rows.map((r) => r.dataset.env)), ['dev']);

    log('sharing: turning sharing off is refused while shares exist');
    await page.goto(`${base}/console/sharing?app=wxA`);
    await page.click('button:has-text("Turn sharing off")');
    assert.match(await page.textContent('.error'), /still shares/);
    assert.equal(await page.textContent('#sharing-state'), 'on');

    log('sharing: wxB sees what is shared with it, and unbinds the app (with a confirmation)');
    await page.goto(`${base}/console/sharing?app=wxB`);
    const withMe = page.locator('#shared-with-me tr[data-owner=wxA]');
    assert.match(await withMe.locator('li[data-env=dev]').textContent(), /functions:invoke/);
    assert.match(await page.textContent('#add-share'), /Sharing of wxB is off/);
    await shot(page, '08-sharing-with-me');
    await withMe.locator('a:has-text("Unbind")').click();
    await page.waitForURL(/\/console\/sharing\/unbind\?/);
    assert.match(await page.textContent('#confirm'), /dev/);
    await shot(page, '09-unbind-confirm');
    await page.click('#confirm button:has-text("Unbind")');
    await page.waitForURL(/app=wxB&done=unbound/);
    assert.equal(await page.locator('#shared-with-me').count(), 0);

    log('sharing: share again as wxA, the owner unbinds too, then sharing goes off');
    await page.goto(`${base}/console/sharing?app=wxA`);
    await page.selectOption('#add-share select[name=to]', 'wxB');
    await page.check('#add-share input[name=env][value=prod]');
    await page.click('#add-share button:has-text("Share")');
    await page.waitForURL(/done=shared/);
    // A call from wxB's user goes through the share, cloudbase_auth and the rules.
    const shared = await invoke('chatty', { kb: 1 }, { from_appid: 'wxB', from_openid: 'o1' });
    assert.equal(shared.error, null, JSON.stringify(shared));
    await page.locator('#shared-by-me tr[data-to=wxB] a:has-text("Unbind")').click();
    await page.click('#confirm button:has-text("Unbind")');
    await page.waitForURL(/app=wxA&done=unbound/);
    assert.equal(await page.locator('#shared-by-me').count(), 0);
    await page.click('button:has-text("Turn sharing off")');
    await page.waitForURL(/done=sharing-off/);

    log('rules: an error at line:column, then fixed; try it');
    await page.goto(`${base}/console/envs/prod/rules`);
    await page.fill('#rules', '{\n  "*": {"invoke": "auth != null &&"}\n}');
    await page.click('button:has-text("Save rules")');
    const at = await page.textContent('#rules-error .at');
    assert.equal(at, 'line 2, column 35', 'the end of the expression, in the editor\'s text');
    assert.match(await page.textContent('#rules-error'), /does not compile/);
    await shot(page, '10-rules-error');
    await page.fill('#rules', '{\n  "*": {"invoke": "auth.custom.x == 1"}\n}');
    await page.click('button:has-text("Save rules")');
    await page.waitForURL(/rules\?done=saved/);
    assert.match(await page.inputValue('#rules'), /auth.custom.x == 1/);
    await page.fill('textarea[name=auth]', '{"appid": "wxB", "custom": {"x": 1}}');
    await page.click('button:has-text("Try it")');
    await page.waitForSelector('#try-result p');
    assert.match(await page.textContent('#try-result'), /allowed/);
    await page.fill('textarea[name=auth]', '{"appid": "wxB", "custom": {"x": 2}}');
    await page.click('button:has-text("Try it")');
    await page.waitForFunction(() => /denied/.test(document.querySelector('#try-result').textContent));
    await shot(page, '11-rules-try');

    log('activations: find the failed call, open its logs and decision');
    const failed = await invoke('fail_error');
    assert.ok(failed.error, 'fail_error fails');
    await page.goto(`${base}/console/activations?env=prod&outcome=error`);
    const failedRow = page.locator(`tr[data-request-id="${failed.request_id}"]`);
    assert.equal(await failedRow.count(), 1, 'the failed call is listed');
    assert.equal(await page.locator('tr.ok').count(), 0, 'only failures');
    await shot(page, '12-activations');
    await failedRow.locator('a').click();
    assert.match(await page.textContent('#outcome'), /fail_error always fails/);

    log('activations: the store filters, so a failure behind 1,000 newer calls is found; pages of 200');
    // (The console once filtered only the newest ~1,000 records.)
    for (let i = 0; i < 11; i++) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => invoke('echo', { i, j })));
    }
    await page.goto(`${base}/console/activations?env=prod&outcome=error`);
    assert.equal(await page.locator(`tr[data-request-id="${failed.request_id}"]`).count(), 1,
      'found behind 1,100 newer calls');
    await page.goto(`${base}/console/activations?env=prod&function=echo`);
    assert.equal(await page.locator('tr[data-request-id]').count(), 200, 'a page of 200');
    const firstPage = await page.locator('tr[data-request-id]').evaluateAll((rows) => rows.map((r) => r.dataset.requestId));
    await page.click('#older');
    await page.waitForURL(/before=\d+/);
    const secondPage = await page.locator('tr[data-request-id]').evaluateAll((rows) => rows.map((r) => r.dataset.requestId));
    assert.equal(secondPage.length, 200);
    assert.ok(secondPage.every((id) => !firstPage.includes(id)), 'older calls, none of the first page');
    assert.match(await page.textContent('#newest'), /Newest/);
    // A start time stays on one line (the live tail once squeezed it onto two).
    const lines = await page.locator('tr[data-request-id] td.time a').first().evaluate((a) => a.getClientRects().length);
    assert.equal(lines, 1, 'the start time on one line');

    log('activations and metrics: a filter value the console does not know is said, not ignored');
    await page.goto(`${base}/console/activations?env=prod&outcome=failed`);
    assert.match(await page.textContent('.error'), /Unknown filter: outcome failed is not one of ok, error, denied/);
    assert.equal(await page.locator('tr[data-request-id]').count(), 0, 'no unfiltered calls shown as matches');
    await page.goto(`${base}/console/activations?env=prod&function=nope`);
    assert.match(await page.textContent('.error'), /no function nope in prod/);
    await page.goto(`${base}/console/metrics?env=prod&window=2h`);
    assert.match(await page.textContent('.error'), /window 2h is not one of 5m, 1h, 24h/);

    log('activations: filter by calling app; the shared call\'s logs and grant decision');
    await page.goto(`${base}/console/activations?env=prod&app=wxB&since=15`);
    const callers = await page.locator('tr[data-request-id] td:nth-child(4)').allTextContents();
    assert.ok(callers.length >= 1 && callers.every((c) => c === 'wxB'), `only wxB's calls: ${callers}`);
    await page.locator(`tr[data-request-id="${shared.request_id}"] a`).click();
    assert.match(await page.textContent('#decision'), /allowed/);
    assert.match(await page.textContent('#decision'), /wxB/);
    assert.match(await page.textContent('#logs'), /\[stdout\] x{100}/);
    await shot(page, '13-activation');

    log('activations: the live tail shows a new call');
    await page.goto(`${base}/console/activations?env=prod&function=echo&tail=1`);
    const fresh = await invoke('echo', { tail: true });
    await page.waitForSelector(`tr[data-request-id="${fresh.request_id}"]`, { timeout: 10000 });

    log('function page: links to its calls and its env\'s metrics');
    await page.goto(`${base}/console/envs/prod/functions/echo`);
    await page.click('#function-activations');
    await page.waitForURL(/\/console\/activations\?env=prod&function=echo$/);
    assert.ok(await page.locator('tr[data-request-id]').count() > 0, 'echo\'s calls');
    await page.goto(`${base}/console/envs/prod/functions/echo`);
    await page.click('#function-metrics');
    await page.waitForURL(/\/console\/metrics\?env=prod$/);

    log('metrics: the window that has the data, 5 min / 1 h / 24 h; the chart updates after calls');
    // Every call so far was in the last few minutes: the 5-minute window holds them all.
    assert.equal(await page.textContent('#windows strong'), '5m');
    const inFive = Number(await page.locator('.env-charts[data-env=prod]').getAttribute('data-calls'));
    await page.click('#windows a[data-window="24h"]');
    await page.waitForURL(/window=24h/);
    assert.equal(await page.textContent('#windows strong'), '24h');
    assert.ok(Number(await page.locator('.env-charts[data-env=prod]').getAttribute('data-calls')) >= inFive);
    assert.match(await page.textContent('.env-charts[data-env=prod] svg.chart'), /-18 h/);
    await page.click('#windows a[data-window="1h"]');
    await page.waitForURL(/window=1h/);
    const card = page.locator('.env-charts[data-env=prod]');
    const before = Number(await card.getAttribute('data-calls'));
    assert.equal(await card.locator('svg.chart').count(), 3);
    for (let i = 0; i < 5; i++) await invoke('echo', { i });
    await page.waitForFunction(
      (n) => Number(document.querySelector('.env-charts[data-env=prod]').dataset.calls) >= n,
      before + 5, { timeout: 10000 });
    assert.ok(await card.locator('path').count() >= 2, 'lines drawn');
    await shot(page, '14-metrics');

    log('logout');
    await page.click('button:has-text("Log out")');
    await page.waitForURL(/\/console\/login$/);
    await page.goto(`${base}/console/metrics`);
    await page.waitForURL(/\/console\/login$/);

    assert.deepEqual(pageErrors, [], 'no script or CSP errors in the pages');
    // Every 4xx the pages got was a form's deliberate refusal, none a missing asset.
    const unexpected = loads.filter(([status, p]) => status >= 400 && !/^\/console\/(sharing\/|envs\/prod\/(deploy|rules)|login|activations$|metrics$)/.test(p));
    assert.deepEqual(unexpected, [], 'no failed loads');

    log('JavaScript off: every read-only page still renders');
    const noJs = await browser.newContext({ javaScriptEnabled: false });
    const p2 = await noJs.newPage();
    await login(p2);
    for (const [url, selector] of [
      ['/console', '#envs tr[data-env=prod]'],
      ['/console/envs/prod', '#functions tr[data-function=hello]'],
      ['/console/envs/prod/functions/hello', '#versions tr[data-version="2"]'],
      ['/console/envs/prod/rules', '#rules'],
      ['/console/sharing?app=wxA', '#switch'],
      ['/console/sharing/configure?app=wxA&to=wxB', '#add-env'],
      ['/console/activations?env=prod', 'tr[data-request-id]'],
      [`/console/envs/prod/activations/${failed.request_id}`, '#outcome'],
      ['/console/metrics', '.env-charts[data-env=prod] svg.chart'],
    ]) {
      await p2.goto(`${base}${url}`);
      assert.equal(await p2.locator(selector).count() > 0, true, `${url} shows ${selector}`);
    }
    await noJs.close();
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify({ ok: true, seconds: (Date.now() - t0) / 1000 }));
}

main().catch((e) => {
  console.error(`console.js failed at step "${step}": ${e.stack || e}`);
  process.exit(1);
});
