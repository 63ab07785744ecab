// Headless-Chromium checks of Frontdesk's server-rendered pages.
//
//   BASE_URL=http://127.0.0.1:5099 [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM_PATH=/usr/bin/chromium] \
//     node tests/browser/landing.mjs
//
// Uses the system Chromium (Debian's `chromium` package); playwright-core never
// downloads a browser. Prints `ok: ...` per passed check, `FAIL: ...` per failed
// one, and exits 1 if anything failed.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BASE_URL = process.env.BASE_URL;
if (!BASE_URL) {
  console.error('FAIL: BASE_URL is required, e.g. BASE_URL=http://127.0.0.1:5099');
  process.exit(1);
}
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || tmpdir();
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ORIGIN = new URL(BASE_URL).origin;
const url = (path) => new URL(path, BASE_URL).href;

const ACCENT = 'rgb(79, 70, 229)'; // --accent in static/app.css

const failures = [];
const screenshots = [];
function ok(msg) {
  console.log(`ok: ${msg}`);
}
function check(cond, msg, detail = '') {
  if (cond) ok(msg);
  else {
    failures.push(detail ? `${msg} (${detail})` : msg);
    console.log(`FAIL: ${msg}${detail ? ` (${detail})` : ''}`);
  }
}

// Collect console errors, page errors, CSP violations and failed same-origin
// requests for one page. `expectedErrorUrl` is a document URL whose own error
// status is intended (the 404 page), so Chromium's "Failed to load resource"
// console line for it is not a failure.
function watch(page, { expectedErrorUrl } = {}) {
  const w = { consoleErrors: [], pageErrors: [], badResponses: [], failedRequests: [], responses: new Map() };
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const loc = m.location()?.url || '';
    if (expectedErrorUrl && loc === expectedErrorUrl && /Failed to load resource/.test(m.text())) return;
    w.consoleErrors.push(`${m.text()}${loc ? ` @ ${loc}` : ''}`);
  });
  page.on('pageerror', (e) => w.pageErrors.push(String(e)));
  page.on('response', (r) => {
    const u = r.url();
    if (!u.startsWith(ORIGIN)) return;
    w.responses.set(u, r.status());
    if (r.status() >= 400 && u !== expectedErrorUrl) w.badResponses.push(`${r.status()} ${u}`);
  });
  page.on('requestfailed', (r) => {
    if (r.url().startsWith(ORIGIN)) w.failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`);
  });
  return w;
}

// DevTools-injected script (not subject to the page's CSP): record
// securitypolicyviolation events in a window array.
const CSP_PROBE = () => {
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} @ ${e.sourceFile || e.documentURI}:${e.lineNumber}`);
  });
};

async function checkCommon(page, w, label) {
  // Stylesheets and icons: each must have loaded with 200. Headless Chromium does
  // not always fetch the favicon, so anything not seen on the wire is fetched
  // explicitly (same cookies/context).
  const hrefs = await page.$$eval('link[rel~="stylesheet"], link[rel~="icon"]', (ls) =>
    ls.map((l) => ({ rel: l.rel, href: l.href })),
  );
  check(hrefs.some((h) => /stylesheet/.test(h.rel)), `${label}: has a <link rel=stylesheet>`);
  check(hrefs.some((h) => /icon/.test(h.rel)), `${label}: has a <link rel=icon>`);
  for (const { rel, href } of hrefs) {
    let status = w.responses.get(href);
    if (status === undefined) status = (await page.request.get(href)).status();
    check(status === 200, `${label}: ${rel} ${new URL(href).pathname} -> 200`, `got ${status}`);
  }
  // The stylesheet really applied: values only app.css sets.
  const styles = await page.evaluate(() => {
    const header = document.querySelector('.site-header');
    const btn = document.querySelector('.btn-primary');
    return {
      headerPosition: header && getComputedStyle(header).position,
      btnBackground: btn && getComputedStyle(btn).backgroundColor,
      sheetRules: [...document.styleSheets].reduce((n, s) => n + s.cssRules.length, 0),
    };
  });
  check(styles.headerPosition === 'sticky', `${label}: app.css applied (.site-header is position: sticky)`, `got ${styles.headerPosition}`);
  check(styles.btnBackground === ACCENT, `${label}: app.css applied (.btn-primary background is ${ACCENT})`, `got ${styles.btnBackground}`);
  check(styles.sheetRules > 50, `${label}: stylesheet rules parsed`, `${styles.sheetRules} rules`);
  // No horizontal overflow (nothing off-screen sideways).
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(overflow <= 0, `${label}: no horizontal overflow`, `page is ${overflow}px wider than the viewport`);

  const csp = await page.evaluate(() => window.__cspViolations || ['(CSP probe missing)']);
  check(csp.length === 0, `${label}: no securitypolicyviolation events`, csp.join('; '));
  check(w.consoleErrors.length === 0, `${label}: no console errors`, w.consoleErrors.join('; '));
  check(w.pageErrors.length === 0, `${label}: no page errors`, w.pageErrors.join('; '));
  check(w.badResponses.length === 0, `${label}: no same-origin 4xx/5xx responses`, w.badResponses.join('; '));
  check(w.failedRequests.length === 0, `${label}: no failed same-origin requests`, w.failedRequests.join('; '));
}

async function shot(page, name) {
  const path = join(SCREENSHOT_DIR, name);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
  ok(`screenshot ${path}`);
}

async function desktop(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await ctx.addInitScript(CSP_PROBE);
  const page = await ctx.newPage();
  const w = watch(page);
  const res = await page.goto(url('/'), { waitUntil: 'load' });
  check(res?.status() === 200, 'desktop: GET / -> 200', `got ${res?.status()}`);
  const title = await page.title();
  check(title.includes('Frontdesk'), 'desktop: title contains "Frontdesk"', `title: ${JSON.stringify(title)}`);
  const h1 = page.locator('.hero h1');
  check(await h1.isVisible(), 'desktop: hero headline h1 is visible');
  check(await page.locator('header nav.nav').isVisible(), 'desktop: desktop nav is visible');
  check(!(await page.locator('details.nav-mobile').isVisible()), 'desktop: mobile menu is hidden');
  await checkCommon(page, w, 'desktop /');
  await shot(page, 'landing-desktop.png');
  await ctx.close();
}

async function phone(browser) {
  const ctx = await browser.newContext({
    viewport: { width: 375, height: 812 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  await ctx.addInitScript(CSP_PROBE);
  const page = await ctx.newPage();
  const w = watch(page);
  const res = await page.goto(url('/'), { waitUntil: 'load' });
  check(res?.status() === 200, 'phone: GET / -> 200', `got ${res?.status()}`);
  check(await page.locator('.hero h1').isVisible(), 'phone: hero headline h1 is visible');
  check(!(await page.locator('header nav.nav').isVisible()), 'phone: desktop nav is hidden');
  const menu = page.locator('details.nav-mobile');
  check(await menu.isVisible(), 'phone: mobile menu (<details>) is visible');
  const startFree = menu.locator('a[href="/signup"]', { hasText: 'Start free' });
  check(!(await startFree.isVisible()), 'phone: "Start free" in the closed menu is hidden');
  await menu.locator('summary').click();
  await startFree.waitFor({ state: 'visible', timeout: 5000 }).catch(() => {});
  check(await menu.evaluate((d) => d.open), 'phone: menu opens on summary click');
  check(await startFree.isVisible(), 'phone: "Start free" becomes visible in the open menu');
  check(
    (await menu.locator('summary').getAttribute('aria-label')) === 'Close menu',
    'phone: the open menu\'s button says it closes it',
  );
  const box = await page.locator('.nav-mobile-panel').boundingBox();
  check(
    box && box.x >= 0 && box.x + box.width <= 375,
    'phone: open menu panel is within the viewport',
    box ? `x=${box.x} width=${box.width}` : 'no box',
  );
  await page.keyboard.press('Escape');
  check(!(await menu.evaluate((d) => d.open)), 'phone: Escape closes the menu');
  check(
    (await menu.locator('summary').getAttribute('aria-label')) === 'Open menu',
    'phone: the closed menu\'s button says it opens it',
  );
  await menu.locator('summary').click();
  await checkCommon(page, w, 'phone /');
  await shot(page, 'landing-phone.png');
  await ctx.close();
}

async function notFound(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await ctx.addInitScript(CSP_PROBE);
  const page = await ctx.newPage();
  const target = url('/no-such-page');
  const w = watch(page, { expectedErrorUrl: target });
  const res = await page.goto(target, { waitUntil: 'load' });
  check(res?.status() === 404, 'not-found: GET /no-such-page -> 404', `got ${res?.status()}`);
  check(await page.getByRole('heading', { name: 'Page not found' }).isVisible(), 'not-found: "Page not found" heading is visible');
  const home = page.locator('main a[href="/"]', { hasText: 'Back to the home page' });
  check(await home.isVisible(), 'not-found: "Back to the home page" link to / is visible');
  const ref = (await page.locator('main p', { hasText: 'Reference:' }).first().textContent().catch(() => null)) || '';
  const code = (await page.locator('main p:has-text("Reference:") code').first().textContent().catch(() => null)) || '';
  check(ref.includes('Reference:') && code.trim().length > 0, 'not-found: reference code is shown', `text: ${JSON.stringify(ref.trim())}`);
  await checkCommon(page, w, 'not-found');
  await shot(page, 'not-found.png');
  await ctx.close();
}

let browser;
try {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  for (const step of [desktop, phone, notFound]) {
    try {
      await step(browser);
    } catch (e) {
      failures.push(`${step.name}: ${e.message}`);
      console.log(`FAIL: ${step.name}: ${e.message}`);
    }
  }
} catch (e) {
  failures.push(`setup: ${e.message}`);
  console.log(`FAIL: setup: ${e.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}

if (screenshots.length) console.log(`screenshots:\n${screenshots.map((p) => `  ${p}`).join('\n')}`);
if (failures.length) {
  console.error(`\n${failures.length} check(s) failed:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  process.exit(1);
}
console.log('all browser checks passed');
