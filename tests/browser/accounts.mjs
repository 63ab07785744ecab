// Headless-Chromium end-to-end check of Frontdesk's accounts flow: sign up, confirm
// the email, sign out and in again, invite a colleague, accept the invitation in a
// second browser context, and see both people on the members page.
//
//   BASE_URL=http://127.0.0.1:5098 MAIL_DIR=/tmp/acc/data/mail [SCREENSHOT_DIR=/tmp/shots] \
//     [CHROMIUM_PATH=/usr/bin/chromium] node tests/browser/accounts.mjs
//
// MAIL_DIR is where the server writes every email as an `.eml` file (DATA_DIR/mail
// when SMTP_URL is not set). Links in emails are built from the server's own
// BASE_URL setting, which may differ from the address this script reaches it at, so
// only a link's path and query are used, prefixed with this script's BASE_URL.
//
// Uses the system Chromium (Debian's `chromium` package); playwright-core never
// downloads a browser. Prints `ok: ...` per passed check, `FAIL: ...` per failed
// one, and exits 1 if anything failed. A failed step stops the flow (later steps
// depend on it), but the error checks below still run.

import { chromium } from 'playwright-core';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const BASE_URL = process.env.BASE_URL;
const MAIL_DIR = process.env.MAIL_DIR;
if (!BASE_URL || !MAIL_DIR) {
  console.error(
    'FAIL: BASE_URL and MAIL_DIR are required, e.g. BASE_URL=http://127.0.0.1:5098 MAIL_DIR=/tmp/acc/data/mail',
  );
  process.exit(1);
}
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || tmpdir();
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ORIGIN = new URL(BASE_URL).origin;
const url = (path) => new URL(path, BASE_URL).href;

// Generous: password hashing in a debug build takes a while.
const NAV_TIMEOUT = 30000;

const RUN = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const ORG = 'Acme Support';
const OWNER = { name: 'Olive Owner', email: `olive+${RUN}@acme.test`, password: 'correct horse battery staple' };
const COLLEAGUE = { name: 'Colin Colleague', email: `colin+${RUN}@acme.test`, password: 'another long passphrase', role: 'agent' };

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
  return cond;
}
// A check the rest of the flow depends on: stop the flow when it fails.
class StepFailed extends Error {}
function must(cond, msg, detail = '') {
  if (!check(cond, msg, detail)) throw new StepFailed(msg);
}

// ---------------------------------------------------------------------------
// Email: poll MAIL_DIR for .eml files.

const seenMail = new Set();
function listMail() {
  try {
    return readdirSync(MAIL_DIR).filter((f) => f.endsWith('.eml'));
  } catch (e) {
    if (e.code === 'ENOENT') return []; // no email written yet
    throw e;
  }
}
// Whatever was already there belongs to someone else.
for (const f of listMail()) seenMail.add(f);

function splitHead(raw) {
  const m = /\r?\n\r?\n/.exec(raw);
  if (!m) return null;
  const head = raw.slice(0, m.index).replace(/\r?\n[ \t]+/g, ' '); // unfold
  const headers = new Map();
  for (const line of head.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  return { headers, body: raw.slice(m.index + m[0].length) };
}

// RFC 2047 encoded words (=?utf-8?b?...?= / =?utf-8?q?...?=) in headers.
function decodeWords(value) {
  return value
    .replace(/(=\?[^?]+\?[bBqQ]\?[^?]*\?=)\s+(?==\?)/g, '$1')
    .replace(/=\?([^?]+)\?([bBqQ])\?([^?]*)\?=/g, (_, charset, enc, text) => {
      const bytes =
        enc.toUpperCase() === 'B'
          ? Buffer.from(text, 'base64')
          : Buffer.from(
              text.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_m, h) => String.fromCharCode(parseInt(h, 16))),
              'latin1',
            );
      return /utf-?8/i.test(charset) ? bytes.toString('utf8') : bytes.toString('latin1');
    });
}

function decodeQuotedPrintable(s) {
  const bytes = s.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
  return Buffer.from(bytes, 'latin1').toString('utf8');
}

function decodeBody(body, encoding) {
  switch ((encoding || '').toLowerCase()) {
    case 'quoted-printable':
      return decodeQuotedPrintable(body);
    case 'base64':
      return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
    default:
      return Buffer.from(body, 'latin1').toString('utf8');
  }
}

// The decoded text/plain part of a (possibly multipart) entity, or null when there
// is none or the file is not completely written yet.
function textPart(headers, body) {
  const type = headers.get('content-type') || 'text/plain';
  if (/^multipart\//i.test(type)) {
    const b = /boundary="?([^";]+)"?/i.exec(type);
    if (!b) return null;
    const delim = `--${b[1]}`;
    const end = body.indexOf(`${delim}--`);
    if (end < 0) return null; // still being written
    for (const chunk of body.slice(0, end).split(delim).slice(1)) {
      const part = splitHead(chunk.replace(/^\r?\n/, ''));
      if (!part) continue;
      const text = textPart(part.headers, part.body.replace(/\r?\n$/, ''));
      if (text !== null) return text;
    }
    return null;
  }
  if (!/^text\/plain/i.test(type)) return null;
  return decodeBody(body, headers.get('content-transfer-encoding'));
}

function readMail(file) {
  const raw = readFileSync(join(MAIL_DIR, file), 'latin1');
  const msg = splitHead(raw);
  if (!msg) return null;
  const text = textPart(msg.headers, msg.body);
  if (text === null) return null;
  return {
    file,
    to: decodeWords(msg.headers.get('to') || ''),
    subject: decodeWords(msg.headers.get('subject') || ''),
    text,
  };
}

// Waits for a not-yet-seen email whose To: contains `to` and whose Subject: contains
// `subjectIncludes`; returns its decoded text/plain part.
async function waitForEmail(to, subjectIncludes, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  const wantTo = to.toLowerCase();
  for (;;) {
    for (const file of listMail().sort()) {
      if (seenMail.has(file)) continue;
      let mail;
      try {
        mail = readMail(file);
      } catch (e) {
        if (e.code === 'ENOENT') continue;
        throw e;
      }
      if (!mail) continue; // incomplete: look again on the next poll
      if (mail.to.toLowerCase().includes(wantTo) && mail.subject.includes(subjectIncludes)) {
        seenMail.add(file);
        ok(`email "${mail.subject}" to ${to} arrived (${file})`);
        return mail.text;
      }
    }
    if (Date.now() > deadline) {
      throw new StepFailed(
        `no email to ${to} with a subject containing ${JSON.stringify(subjectIncludes)} in ${MAIL_DIR} within ${timeoutMs} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The link in `text` whose path is `path`, as path+query resolved against BASE_URL.
function linkIn(text, path, label) {
  const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`https?://[^\\s<>"]*?(${escaped}\\?[^\\s<>"]+)`).exec(text);
  must(m, `${label}: email contains a ${path}?... link`, `text: ${JSON.stringify(text.slice(0, 400))}`);
  const found = new URL(m[0]);
  const target = url(found.pathname + found.search);
  ok(`${label}: link ${found.pathname}${found.search.replace(/token=[^&]+/, 'token=…')} -> ${new URL(target).origin}`);
  return target;
}

// ---------------------------------------------------------------------------
// Error collection: console errors, page errors, CSP violations, same-origin 5xx.

const watchers = [];
async function newWatchedContext(browser, label, options) {
  const ctx = await browser.newContext(options);
  const w = { label, consoleErrors: [], pageErrors: [], csp: [], serverErrors: [], clientErrors: [] };
  watchers.push(w);
  // Reported through a DevTools binding, so nothing is lost when a page navigates
  // (and the page's CSP does not apply to injected scripts or bindings).
  await ctx.exposeFunction('__reportCspViolation', (v) => w.csp.push(v));
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__reportCspViolation(
        `${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} @ ${e.sourceFile || e.documentURI}:${e.lineNumber}`,
      );
    });
  });
  const page = await ctx.newPage();
  page.setDefaultTimeout(NAV_TIMEOUT);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const loc = m.location()?.url || '';
    w.consoleErrors.push(`${m.text()}${loc ? ` @ ${loc}` : ''}`);
  });
  page.on('pageerror', (e) => w.pageErrors.push(String(e)));
  page.on('response', (r) => {
    const u = r.url();
    if (!u.startsWith(ORIGIN)) return;
    const line = `${r.request().method()} ${new URL(u).pathname} -> ${r.status()}`;
    if (r.status() >= 500) w.serverErrors.push(line);
    else if (r.status() >= 400) w.clientErrors.push(line);
  });
  return { ctx, page };
}

function checkWatchers() {
  for (const w of watchers) {
    check(w.consoleErrors.length === 0, `${w.label}: no console errors`, w.consoleErrors.join('; '));
    check(w.pageErrors.length === 0, `${w.label}: no page errors`, w.pageErrors.join('; '));
    check(w.csp.length === 0, `${w.label}: no securitypolicyviolation events`, w.csp.join('; '));
    check(w.serverErrors.length === 0, `${w.label}: no same-origin 5xx responses`, w.serverErrors.join('; '));
    if (w.clientErrors.length) console.log(`note: ${w.label}: same-origin 4xx responses: ${w.clientErrors.join('; ')}`);
  }
}

// ---------------------------------------------------------------------------
// Page helpers.

const pathOf = (page) => new URL(page.url()).pathname;

async function gotoOk(page, target, label) {
  const res = await page.goto(target.startsWith('http') ? target : url(target), { waitUntil: 'load' });
  must(res?.status() === 200, `${label}: GET ${new URL(page.url()).pathname} -> 200`, `got ${res?.status()}`);
}

// Clicks a form's submit button and waits for the POST to `action` to answer.
async function submit(page, button, action, label, expectStatus = 303) {
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === action, {
      timeout: NAV_TIMEOUT,
    }),
    button.click(),
  ]);
  must(res.status() === expectStatus, `${label}: POST ${action} -> ${expectStatus}`, `got ${res.status()}${await errorsOnPage(page)}`);
  return res;
}

// After a redirect: wait until the browser shows `path`.
async function expectPath(page, path, label) {
  await page.waitForURL((u) => u.pathname === path, { timeout: NAV_TIMEOUT, waitUntil: 'load' }).catch(() => {});
  must(pathOf(page) === path, `${label}: lands on ${path}`, `at ${page.url()}${await errorsOnPage(page)}`);
}

async function expectVisible(locator, label, detail = '') {
  const seen = await locator
    .first()
    .waitFor({ state: 'visible', timeout: 10000 })
    .then(() => true)
    .catch(() => false);
  must(seen, label, detail);
}

// Form errors shown on the page, to explain an unexpected status or URL.
async function errorsOnPage(page) {
  const msgs = await page
    .locator('.alert-error, .field-error')
    .allTextContents()
    .catch(() => []);
  return msgs.length ? `; page says: ${msgs.map((s) => s.trim()).join(' | ')}` : '';
}

async function shot(page, name) {
  const path = join(SCREENSHOT_DIR, name);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
  ok(`screenshot ${path}`);
}

// The page is no wider than the viewport; on failure, names the innermost elements
// whose right edge sets the page width.
async function noHorizontalOverflow(page, label) {
  const { overflow, culprits } = await page.evaluate(() => {
    const root = document.documentElement;
    const overflow = root.scrollWidth - root.clientWidth;
    if (overflow <= 0) return { overflow, culprits: [] };
    // Clipped by a scroll container it belongs to (an absolutely positioned element
    // escapes overflow containers that are not positioned).
    const clipped = (el) => {
      let mode = getComputedStyle(el).position;
      if (mode === 'fixed') return true;
      for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
        const s = getComputedStyle(a);
        if (mode === 'absolute' && s.position === 'static') continue; // not its containing block
        if (s.overflowX !== 'visible') return true;
        mode = s.position;
      }
      return false;
    };
    const edge = root.scrollWidth - 1 - window.scrollX;
    const hits = [...document.body.querySelectorAll('*')].filter(
      (el) => el.getBoundingClientRect().right >= edge && !clipped(el),
    );
    const culprits = hits
      .filter((el) => !hits.some((other) => other !== el && el.contains(other)))
      .slice(0, 5)
      .map((el) => {
        const r = el.getBoundingClientRect();
        const name = `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${[...el.classList].map((c) => `.${c}`).join('')}`;
        const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 40);
        return `${name}${text ? ` "${text}"` : ''} (right edge ${Math.round(r.right + window.scrollX)}px, position: ${getComputedStyle(el).position})`;
      });
    return { overflow, culprits };
  });
  check(
    overflow <= 0,
    `${label}: no horizontal overflow`,
    `page is ${overflow}px wider than the viewport${culprits.length ? `; widest: ${culprits.join(', ')}` : ''}`,
  );
}

// ---------------------------------------------------------------------------
// The flow.

async function flow(browser) {
  const owner = await newWatchedContext(browser, 'owner', { viewport: { width: 1280, height: 900 } });
  const a = owner.page;

  // 1. Sign up.
  await gotoOk(a, '/signup', 'signup');
  await a.fill('#organization', ORG);
  await a.fill('#name', OWNER.name);
  await a.fill('#email', OWNER.email);
  await a.fill('#password', OWNER.password);
  await submit(a, a.locator('form[action="/signup"] button[type="submit"]'), '/signup', 'signup');
  await expectPath(a, '/app', 'signup');
  await expectVisible(a.locator('h1', { hasText: `Welcome to ${ORG}` }), `signup: dashboard shows "Welcome to ${ORG}"`);
  await expectVisible(
    a.locator('.app-main .alert', { hasText: 'Confirm your email address' }),
    'signup: banner asks to confirm the email address',
  );
  await expectVisible(
    a.locator('.app-main .alert form[action="/app/account/verification"] button', { hasText: 'Send it again' }),
    'signup: the banner offers to send the link again',
  );
  const userChip = (await a.locator('.app-user-id').textContent())?.replace(/\s+/g, ' ').trim();
  check(userChip?.includes(OWNER.name) && userChip.includes(OWNER.email), 'signup: top bar shows the owner', `got ${JSON.stringify(userChip)}`);

  // 2. Confirm the email address.
  const verifyText = await waitForEmail(OWNER.email, 'Confirm your email address');
  const verifyUrl = linkIn(verifyText, '/verify-email', 'verify');
  await gotoOk(a, verifyUrl, 'verify');
  await expectVisible(a.locator('h1', { hasText: 'Email confirmed' }), 'verify: page says "Email confirmed"');

  // 3. Sign out, sign in again.
  await gotoOk(a, '/app', 'sign-out');
  check(
    (await a.locator('.app-main .alert', { hasText: 'Confirm your email address' }).count()) === 0,
    'sign-out: confirmation banner is gone once the email is confirmed',
  );
  await submit(a, a.locator('.app-bar form[action="/logout"] button', { hasText: 'Sign out' }), '/logout', 'sign-out');
  await expectPath(a, '/login', 'sign-out');
  const afterLogout = await a.request.get(url('/app'), { maxRedirects: 0 });
  check(
    afterLogout.status() >= 300 && afterLogout.status() < 400 && !String(afterLogout.headers().location || '').endsWith('/app'),
    'sign-out: /app is no longer reachable without signing in',
    `GET /app -> ${afterLogout.status()} ${afterLogout.headers().location || ''}`,
  );
  await gotoOk(a, '/login', 'sign-in');
  await a.fill('#email', OWNER.email);
  await a.fill('#password', OWNER.password);
  await submit(a, a.locator('form[action="/login"] button[type="submit"]'), '/login', 'sign-in');
  await expectPath(a, '/app', 'sign-in');
  await expectVisible(a.locator('h1', { hasText: `Welcome to ${ORG}` }), `sign-in: dashboard shows "Welcome to ${ORG}"`);

  // 4. Invite a colleague.
  await gotoOk(a, '/app/members', 'invite');
  await a.fill('#invite-email', COLLEAGUE.email);
  await a.selectOption('#invite-role', COLLEAGUE.role);
  await submit(a, a.locator('form[action="/app/members/invite"] button[type="submit"]'), '/app/members/invite', 'invite');
  await expectPath(a, '/app/members', 'invite');
  await expectVisible(
    a.locator('.app-main .alert-success', { hasText: 'Invitation sent' }),
    'invite: success message "Invitation sent"',
    await errorsOnPage(a),
  );
  const sent = (await a.locator('.app-main .alert-success', { hasText: 'Invitation sent' }).first().textContent())?.trim();
  check(sent?.includes(COLLEAGUE.email), 'invite: success message names the invited address', `got ${JSON.stringify(sent)}`);
  const pending = a.locator('section[aria-labelledby="invitations-heading"] tbody tr', { hasText: COLLEAGUE.email });
  check((await pending.count()) === 1, 'invite: invitation is listed as pending');

  // 5. The invitation email.
  const inviteText = await waitForEmail(COLLEAGUE.email, 'invited you');
  const acceptUrl = linkIn(inviteText, '/invitations/accept', 'invitation');

  // 6. The colleague accepts in a separate browser context.
  const colleague = await newWatchedContext(browser, 'colleague', { viewport: { width: 1280, height: 900 } });
  const b = colleague.page;
  await gotoOk(b, acceptUrl, 'accept');
  await expectVisible(b.locator('h1', { hasText: `Join ${ORG}` }), `accept: page says "Join ${ORG}"`);
  const invitedAs = (await b.locator('.auth-card p', { hasText: 'You were invited as' }).first().textContent())?.replace(/\s+/g, ' ').trim();
  check(
    invitedAs?.includes(COLLEAGUE.role) && invitedAs.includes(COLLEAGUE.email),
    `accept: shows the role ${COLLEAGUE.role} and the invited address`,
    `got ${JSON.stringify(invitedAs)}`,
  );
  await b.fill('#name', COLLEAGUE.name);
  await b.fill('#password', COLLEAGUE.password);
  await submit(b, b.locator('form[action="/invitations/accept"] button[type="submit"]'), '/invitations/accept', 'accept');
  await expectPath(b, '/app', 'accept');
  await expectVisible(b.locator('h1', { hasText: `Welcome to ${ORG}` }), `accept: dashboard shows "Welcome to ${ORG}"`);
  const orgName = (await b.locator('.app-org').textContent())?.trim();
  check(orgName?.includes(ORG), `accept: top bar shows ${ORG}`, `got ${JSON.stringify(orgName)}`);
  const colleagueRole = (await b.locator('.app-user .badge-role').textContent())?.trim();
  check(colleagueRole === COLLEAGUE.role, `accept: colleague's role badge is ${COLLEAGUE.role}`, `got ${JSON.stringify(colleagueRole)}`);

  // 7. The owner sees both members.
  await gotoOk(a, '/app/members', 'members');
  const rows = a.locator('section[aria-labelledby="members-heading"] tbody tr');
  const ownerRow = rows.filter({ hasText: OWNER.email });
  const colleagueRow = rows.filter({ hasText: COLLEAGUE.email });
  check((await ownerRow.count()) === 1, `members: table lists ${OWNER.email}`);
  must((await colleagueRow.count()) === 1, `members: table lists ${COLLEAGUE.email}`, `rows: ${JSON.stringify(await rows.allTextContents())}`);
  // Owners see an editable <select>; otherwise the role is a badge.
  const roleCell = colleagueRow.locator('td').nth(2);
  const role = (await roleCell.locator('select').count())
    ? await roleCell.locator('select').inputValue()
    : (await roleCell.textContent())?.trim();
  check(role === COLLEAGUE.role, `members: ${COLLEAGUE.email} has the role ${COLLEAGUE.role}`, `got ${JSON.stringify(role)}`);
  const colleagueName = (await colleagueRow.locator('td').first().textContent())?.trim();
  check(colleagueName === COLLEAGUE.name, `members: colleague's name is ${COLLEAGUE.name}`, `got ${JSON.stringify(colleagueName)}`);
  check(
    (await a.locator('section[aria-labelledby="invitations-heading"] tbody tr', { hasText: COLLEAGUE.email }).count()) === 0,
    'members: the accepted invitation is no longer pending',
  );
  await noHorizontalOverflow(a, 'members 1280x900');
  await shot(a, 'members.png');

  // Phone-sized view of the same page, with the owner's session.
  const phone = await newWatchedContext(browser, 'owner-phone', {
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    storageState: await owner.ctx.storageState(),
  });
  await gotoOk(phone.page, '/app/members', 'members phone');
  check(
    (await phone.page.locator('section[aria-labelledby="members-heading"] tbody tr', { hasText: COLLEAGUE.email }).count()) === 1,
    `members phone: table lists ${COLLEAGUE.email}`,
  );
  await noHorizontalOverflow(phone.page, 'members 390x844');
  await shot(phone.page, 'members-phone.png');
  await phone.ctx.close();

  // 8. The colleague manages no one, but can leave.
  await gotoOk(b, '/app/members', 'leave');
  const buttons = (await b.locator('section[aria-labelledby="members-heading"] tbody button').allTextContents()).map((t) => t.trim());
  check(
    JSON.stringify(buttons) === JSON.stringify(['Leave']),
    'leave: a colleague sees only their own Leave button',
    `buttons: ${JSON.stringify(buttons)}`,
  );
  const leave = b.locator('section[aria-labelledby="members-heading"] tbody tr', { hasText: COLLEAGUE.email }).locator('button', { hasText: 'Leave' });
  const leaveAction = await leave.locator('xpath=ancestor::form').getAttribute('action');
  // Leaving cannot be undone: the page asks first. Declined, nothing is sent.
  const asked = [];
  let posted = 0;
  const countPosts = (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === leaveAction) posted += 1;
  };
  b.on('request', countPosts);
  b.once('dialog', (d) => {
    asked.push(d.message());
    d.dismiss().catch(() => {});
  });
  await leave.click();
  await b.waitForTimeout(500);
  check(
    asked.length === 1 && asked[0].includes(`Leave ${ORG}?`) && posted === 0,
    'leave: asks first, and declining sends nothing',
    `asked ${JSON.stringify(asked)}, posted ${posted}`,
  );
  b.off('request', countPosts);
  b.once('dialog', (d) => d.accept().catch(() => {}));
  await submit(b, leave, leaveAction, 'leave');
  await expectPath(b, '/app/welcome', 'leave');
  await expectVisible(b.locator('h1', { hasText: 'Start an organization' }), 'leave: in no organization, /app offers to start one');
  await expectVisible(b.locator('.alert-success', { hasText: `You left ${ORG}.` }), 'leave: says which organization was left');
  await shot(b, 'welcome.png');
  await colleague.ctx.close();
  await gotoOk(a, '/app/members', 'after leaving');
  check(
    (await a.locator('section[aria-labelledby="members-heading"] tbody tr', { hasText: COLLEAGUE.email }).count()) === 0,
    'after leaving: the colleague is no longer listed',
  );
  await owner.ctx.close();
}

let browser;
try {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  console.log(`run ${RUN}: owner ${OWNER.email}, colleague ${COLLEAGUE.email}`);
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
  try {
    await flow(browser);
  } catch (e) {
    // A failed `must` was already reported; anything else is unexpected.
    if (!(e instanceof StepFailed)) {
      failures.push(`flow: ${e.message}`);
      console.log(`FAIL: flow: ${e.message}`);
    } else if (!failures.some((f) => f.startsWith(e.message))) {
      failures.push(e.message);
      console.log(`FAIL: ${e.message}`);
    }
  }
  checkWatchers();
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
console.log('all accounts checks passed');
