// Headless-Chromium end-to-end check of Frontdesk's embeddable chat widget: a plain
// "customer website" served by this script embeds widget.js; a visitor opens the
// bubble, asks a question, watches the answer stream in with citations, tries to
// inject HTML, and asks for a person. The same page on an origin the agent does not
// allow must show the widget as unavailable. Finally the public chat page
// /c/{org}/{agent} (page mode) must render under the server's CSP, stay one
// screen high with its messages scrolling inside, and (PARTS=team) show the
// team's Markdown replies formatted, in time order, and a conversation the team
// closed to read, with a button to start a new one.
//
//   BASE_URL=http://127.0.0.1:5098 ORG=harbor-bikes AGENT=support HOST_PORT=5099 \
//     [QUESTION='Can I return a bike?'] [EXPECT_TEXT='30 days'] [EXPECT_CITATION='Returns policy'] \
//     [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM_PATH=/usr/bin/chromium] node tests/browser/widget.mjs
//
// ORG and AGENT must already exist, with a knowledge base that answers QUESTION, and
// the agent's allowed origins must contain http://127.0.0.1:HOST_PORT but not
// http://localhost:HOST_PORT (this script serves the same page on both). HOST_PORT
// must be free. EXPECT_TEXT must occur in the answer and EXPECT_CITATION in one of
// its citations; when either is empty, only a non-empty answer / at least one
// citation is required.
//
// Uses the system Chromium (Debian's `chromium` package); playwright-core never
// downloads a browser. Prints `ok: ...` per passed check, `FAIL: ...` per failed
// one, and exits 1 if anything failed. A failed step stops its part of the flow
// (later steps depend on it); the other parts and the error checks still run.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BASE_URL = process.env.BASE_URL;
const ORG = process.env.ORG;
const AGENT = process.env.AGENT;
const HOST_PORT = Number(process.env.HOST_PORT);
if (!BASE_URL || !ORG || !AGENT || !HOST_PORT) {
  console.error(
    'FAIL: BASE_URL, ORG, AGENT and HOST_PORT are required, e.g. BASE_URL=http://127.0.0.1:5098 ORG=harbor-bikes AGENT=support HOST_PORT=5099',
  );
  process.exit(1);
}
const QUESTION = process.env.QUESTION || 'Can I return a bike?';
const API_KEY = process.env.API_KEY || '';
const EXPECT_TEXT = process.env.EXPECT_TEXT || '';
const EXPECT_CITATION = process.env.EXPECT_CITATION || '';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || tmpdir();
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ORIGIN = new URL(BASE_URL).origin;
const url = (path) => new URL(path, BASE_URL).href;

const ALLOWED_PAGE = `http://127.0.0.1:${HOST_PORT}/`;
const REFUSED_PAGE = `http://localhost:${HOST_PORT}/`;
const WIDGET_SRC = url('/widget.js');

const NAV_TIMEOUT = 30000;
const REPLY_TIMEOUT = 30000;

const XSS = '<img src=x onerror=alert(1)>';
const UNAVAILABLE = 'This chat is not available on this site.';
const NOTE = 'A person from the team will follow up here.';

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
// The customer website: one page, served on 127.0.0.1 (allowed origin) and, through
// the name localhost, on a second origin the agent does not allow.

const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function hostPage() {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Harbor Bikes</title>
<link rel="icon" href="data:,">
<style>
  body { margin: 0; font: 16px/1.6 Georgia, serif; color: #222; background: #fbf8f3; }
  header { background: #0f3d3e; color: #fff; padding: 18px 32px; display: flex; justify-content: space-between; align-items: center; }
  header b { font-size: 22px; letter-spacing: .02em; }
  nav a { color: #cfe8e4; margin-left: 18px; text-decoration: none; }
  .hero { padding: 64px 32px; background: linear-gradient(120deg, #e7f2ef, #f7efe2); }
  .hero h1 { font-size: 44px; margin: 0 0 12px; }
  main { max-width: 880px; margin: 0 auto; padding: 32px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 20px; }
  .card { background: #fff; border: 1px solid #e6dfd3; border-radius: 10px; padding: 18px; }
  footer { padding: 32px; color: #777; text-align: center; }
</style>
</head>
<body>
<header><b>Harbor Bikes</b><nav><a href="#">Bikes</a><a href="#">Repairs</a><a href="#">Rentals</a><a href="#">Contact</a></nav></header>
<section class="hero">
  <h1>Ride the harbor.</h1>
  <p>City bikes, cargo bikes and e-bikes, serviced by people who ride every day.</p>
</section>
<main>
  <div class="grid">
    <div class="card"><h3>City bikes</h3><p>Light, upright and built for cobblestones. From $549.</p></div>
    <div class="card"><h3>Cargo bikes</h3><p>Carry two kids or a week of groceries. Test rides every Saturday.</p></div>
    <div class="card"><h3>Repairs</h3><p>Same-day tune-ups for most bikes dropped off before 10am.</p></div>
  </div>
  <p>Questions about orders, returns or repairs? Our assistant answers around the clock.</p>
</main>
<footer>&copy; Harbor Bikes &middot; 12 Quay Street</footer>
<script src="${esc(WIDGET_SRC)}" data-org="${esc(ORG)}" data-agent="${esc(AGENT)}" async></script>
</body>
</html>
`;
}

const hostServers = [];
async function startHostSite() {
  const handler = (req, res) => {
    const path = new URL(req.url, 'http://host').pathname;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(hostPage());
    } else if (path === '/favicon.ico') {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  };
  // localhost may resolve to ::1 first; serve there too when the machine has it.
  for (const host of ['127.0.0.1', '::1']) {
    const server = createServer(handler);
    try {
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(HOST_PORT, host, resolve);
      });
      hostServers.push(server);
    } catch (e) {
      if (host === '127.0.0.1') throw new Error(`cannot listen on 127.0.0.1:${HOST_PORT}: ${e.message}`);
    }
  }
  ok(`customer website on ${ALLOWED_PAGE} and ${REFUSED_PAGE} embeds ${WIDGET_SRC}`);
}

// ---------------------------------------------------------------------------
// Error collection: console errors, page errors, CSP violations, 5xx from Frontdesk.

const watchers = [];
async function newWatchedContext(browser, label, options, { expectConsoleErrors = false } = {}) {
  const ctx = await browser.newContext(options);
  const w = { label, expectConsoleErrors, consoleErrors: [], pageErrors: [], csp: [], serverErrors: [], clientErrors: [], dialogs: [] };
  watchers.push(w);
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
  page.on('dialog', (d) => {
    w.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on('response', (r) => {
    const u = r.url();
    if (!u.startsWith(ORIGIN)) return;
    const line = `${r.request().method()} ${new URL(u).pathname} -> ${r.status()}`;
    if (r.status() >= 500) w.serverErrors.push(line);
    else if (r.status() >= 400) w.clientErrors.push(line);
  });
  return { ctx, page, w };
}

function checkWatchers() {
  for (const w of watchers) {
    if (w.expectConsoleErrors) {
      if (w.consoleErrors.length) console.log(`note: ${w.label}: console errors (expected here): ${w.consoleErrors.join('; ')}`);
    } else {
      check(w.consoleErrors.length === 0, `${w.label}: no console errors`, w.consoleErrors.join('; '));
    }
    check(w.pageErrors.length === 0, `${w.label}: no page errors`, w.pageErrors.join('; '));
    check(w.csp.length === 0, `${w.label}: no securitypolicyviolation events`, w.csp.join('; '));
    check(w.dialogs.length === 0, `${w.label}: no alert/confirm dialogs`, w.dialogs.join('; '));
    check(w.serverErrors.length === 0, `${w.label}: no 5xx responses from Frontdesk`, w.serverErrors.join('; '));
    if (w.clientErrors.length) console.log(`note: ${w.label}: 4xx responses from Frontdesk: ${w.clientErrors.join('; ')}`);
  }
}

// ---------------------------------------------------------------------------
// Widget helpers. Playwright's CSS locators pierce the widget's open shadow root.

const widget = (page) => page.locator('#frontdesk-widget');
const inWidget = (page, css, options) => widget(page).locator(`css=${css}`, options);

async function visible(locator, timeout = 10000) {
  return locator
    .first()
    .waitFor({ state: 'visible', timeout })
    .then(() => true)
    .catch(() => false);
}

async function gotoOk(page, target, label) {
  const res = await page.goto(target, { waitUntil: 'load' });
  must(res?.status() === 200, `${label}: GET ${target} -> 200`, `got ${res?.status()}`);
}

async function shot(page, name, fullPage = true) {
  const path = join(SCREENSHOT_DIR, name);
  await page.screenshot({ path, fullPage });
  screenshots.push(path);
  ok(`screenshot ${path}`);
}

// Counts in the shadow root, to tell a new reply (or a new error line) apart.
function counts(page) {
  return page.evaluate(() => {
    const r = document.getElementById('frontdesk-widget')?.shadowRoot;
    return {
      agents: r ? r.querySelectorAll('.fd-message.fd-agent').length : 0,
      errors: r ? r.querySelectorAll('.fd-error').length : 0,
    };
  });
}

// The newest agent message and the error lines, as plain data.
function lastReply(page) {
  return page.evaluate(() => {
    const r = document.getElementById('frontdesk-widget').shadowRoot;
    const agents = r.querySelectorAll('.fd-message.fd-agent');
    const m = agents[agents.length - 1];
    return {
      text: m ? (m.querySelector('.fd-body') || m).textContent : '',
      done: m?.getAttribute('data-done') || null,
      error: m?.getAttribute('data-error') || null,
      deltas: Number(m?.getAttribute('data-deltas') || 0),
      citations: m ? [...m.querySelectorAll('.fd-citation')].map((c) => c.textContent) : [],
      chips: m ? m.querySelectorAll('.fd-cite-btn').length : 0,
      errors: [...r.querySelectorAll('.fd-error')].map((e) => e.textContent),
    };
  });
}

// Types `text` into the widget, presses Enter and waits until the reply stream has
// finished (the new agent message has data-done="true") or an error line appeared.
async function ask(page, text, label) {
  const before = await counts(page);
  const input = inWidget(page, '.fd-input');
  must(await input.isEnabled(), `${label}: the message box is enabled`);
  await input.fill(text);
  await input.press('Enter');
  const finished = await page
    .waitForFunction(
      (n) => {
        const r = document.getElementById('frontdesk-widget').shadowRoot;
        const agents = r.querySelectorAll('.fd-message.fd-agent');
        const last = agents[agents.length - 1];
        if (agents.length > n.agents && last.getAttribute('data-done') === 'true') return true;
        return r.querySelectorAll('.fd-error').length > n.errors;
      },
      before,
      { timeout: REPLY_TIMEOUT, polling: 100 },
    )
    .then(() => true)
    .catch(() => false);
  const reply = await lastReply(page);
  must(finished, `${label}: the reply finished streaming within ${REPLY_TIMEOUT / 1000} s`, `last reply ${JSON.stringify(reply)}`);
  const newErrors = reply.errors.slice(before.errors);
  must(newErrors.length === 0 && reply.error === null, `${label}: the reply arrived without an error`, newErrors.join(' | '));
  return reply;
}

// ---------------------------------------------------------------------------
// The flows.

async function allowedSite(browser) {
  const { page } = await newWatchedContext(browser, 'allowed origin', { viewport: { width: 1280, height: 900 } });

  // 1. Open the bubble, see the greeting, ask, watch the answer stream in.
  await gotoOk(page, ALLOWED_PAGE, 'widget');
  const bubble = inWidget(page, '.fd-bubble');
  must(await visible(bubble), 'widget: the chat bubble appears on the customer website');
  check((await bubble.getAttribute('aria-label')) === 'Chat with us', 'widget: the bubble is labelled "Chat with us"');
  check((await bubble.getAttribute('aria-expanded')) === 'false', 'widget: the bubble starts collapsed');
  await bubble.click();
  const panel = inWidget(page, '.fd-panel');
  must(await visible(panel), 'widget: clicking the bubble opens the panel');
  check((await panel.getAttribute('role')) === 'dialog', 'widget: the panel is a dialog');
  check((await bubble.getAttribute('aria-expanded')) === 'true', 'widget: the bubble is marked expanded');
  const greeting = inWidget(page, '.fd-messages .fd-message.fd-agent');
  must(await visible(greeting, 15000), 'widget: the greeting appears as the first agent message');
  const greetingText = ((await greeting.first().textContent()) || '').trim();
  must(greetingText.length > 0, 'widget: the greeting is not empty', JSON.stringify(greetingText));
  ok(`widget: greeting ${JSON.stringify(greetingText.slice(0, 80))}`);
  const title = ((await inWidget(page, '.fd-title').textContent()) || '').trim();
  check(title.length > 0 && title !== 'Chat', 'widget: the panel title is the agent name', JSON.stringify(title));
  check((await inWidget(page, '.fd-bubble[data-state=unavailable]').count()) === 0, 'widget: the bubble is not marked unavailable');
  const messages = inWidget(page, '.fd-messages');
  check((await messages.getAttribute('aria-live')) === 'polite', 'widget: the message list is an aria-live="polite" region');
  check(
    await page.evaluate(() => document.getElementById('frontdesk-widget').shadowRoot.activeElement?.classList.contains('fd-input')),
    'widget: opening the panel focuses the message box',
  );

  const answer = await ask(page, QUESTION, 'question');
  check(
    (await inWidget(page, '.fd-message.fd-visitor').allTextContents()).some((t) => t.trim() === QUESTION),
    'question: shown as a visitor message',
  );
  ok(`question: answer ${JSON.stringify(answer.text.slice(0, 160))}${answer.text.length > 160 ? '…' : ''}`);
  check(answer.deltas > 1, 'question: the answer arrived in more than one delta', `data-deltas=${answer.deltas}`);
  if (EXPECT_TEXT) {
    check(answer.text.includes(EXPECT_TEXT), `question: the answer contains ${JSON.stringify(EXPECT_TEXT)}`, JSON.stringify(answer.text));
  } else {
    check(answer.text.trim().length > 0, 'question: the answer is not empty');
  }
  check(answer.citations.length > 0, 'question: the answer lists its sources (.fd-citation)');
  check(
    answer.citations.every((c) => /^\[\d+\] \S/.test(c)),
    'question: citations read "[n] title — heading"',
    JSON.stringify(answer.citations),
  );
  if (EXPECT_CITATION) {
    check(
      answer.citations.some((c) => c.includes(EXPECT_CITATION)),
      `question: a citation mentions ${JSON.stringify(EXPECT_CITATION)}`,
      JSON.stringify(answer.citations),
    );
  }
  if (answer.chips) ok(`question: ${answer.chips} citation marker(s) rendered as chips`);
  const input = inWidget(page, '.fd-input');
  check((await input.isEnabled()) && (await input.inputValue()) === '', 'question: the message box is empty and enabled again');
  check((await inWidget(page, '.fd-count').count()) > 0, 'question: the panel shows a character counter');
  await shot(page, 'widget.png');

  // The same conversation on a phone-sized viewport: the panel fills the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const box = await panel.boundingBox();
  check(
    box && box.x <= 1 && box.y <= 1 && box.width >= 389 && box.height >= 843,
    'phone: the panel fills the 390x844 viewport',
    JSON.stringify(box),
  );
  check(!(await bubble.isVisible()), 'phone: the bubble steps aside while the panel is open');
  await shot(page, 'widget-phone.png', false);
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.waitForTimeout(200);

  // 2. HTML in a message is shown as text, never parsed.
  const xssText = `Is this safe? ${XSS}`;
  await ask(page, xssText, 'html injection');
  const visitorTexts = await inWidget(page, '.fd-message.fd-visitor').allTextContents();
  check(visitorTexts.some((t) => t.includes(XSS)), 'html injection: the visitor message shows the markup literally', JSON.stringify(visitorTexts));
  const imgs = await page.evaluate(
    () => document.getElementById('frontdesk-widget').shadowRoot.querySelectorAll('img').length + document.querySelectorAll('img').length,
  );
  check(imgs === 0, 'html injection: no <img> element was created', `${imgs} found`);

  // 3. A question the knowledge base cannot answer: the answer offers a
  // person, and the button under it reads as the reply to that question.
  await ask(page, 'Zeppelin quasar plumbus?', 'offer');
  const offer = inWidget(page, '.fd-offer .fd-handoff-inline').last();
  must(await visible(offer), 'offer: a weak match offers a person under the answer');
  check(
    ((await offer.textContent()) || '').trim() === 'Yes, talk to a person',
    'offer: the button under the answer reads "Yes, talk to a person"',
    JSON.stringify(await offer.textContent()),
  );
  await shot(page, 'widget-offer.png');

  // 4. Talk to a person.
  const handoff = inWidget(page, '.fd-footer .fd-handoff');
  must(await visible(handoff), 'handoff: "Talk to a person" is in the panel footer');
  check(((await handoff.textContent()) || '').includes('Talk to a person'), 'handoff: the button reads "Talk to a person"');
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/escalate'), {
      timeout: NAV_TIMEOUT,
    }),
    handoff.click(),
  ]);
  must(res.status() === 200, 'handoff: POST …/escalate -> 200', `got ${res.status()}`);
  must(await visible(inWidget(page, '.fd-note', { hasText: NOTE })), `handoff: the panel says "${NOTE}"`);
  check(await handoff.isDisabled(), 'handoff: the button is disabled afterwards');
  check(
    ((await handoff.textContent()) || '').includes('A person has been asked'),
    'handoff: the disabled button says a person has been asked',
    JSON.stringify(await handoff.textContent()),
  );

  // Escape closes the panel and gives focus back to the bubble.
  await input.focus();
  await page.keyboard.press('Escape');
  check(await panel.isHidden(), 'widget: Escape closes the panel');
  check(
    await page.evaluate(() => document.getElementById('frontdesk-widget').shadowRoot.activeElement?.classList.contains('fd-bubble')),
    'widget: focus returns to the bubble',
  );

  // A reload continues the conversation.
  await bubble.click();
  must(await visible(panel), 'reload: the panel opens again');
  await page.reload({ waitUntil: 'load' });
  if (!(await visible(panel, 3000))) await inWidget(page, '.fd-bubble').click();
  const resumed = await inWidget(page, '.fd-message.fd-visitor', { hasText: QUESTION })
    .first()
    .waitFor({ state: 'visible', timeout: 10000 })
    .then(() => true)
    .catch(() => false);
  check(resumed, 'reload: the conversation is redrawn after a reload');

}

async function resolvedSite(browser) {
  // 6. The team resolves a conversation: a reload starts afresh instead of resuming it.
  // The refused message shows up as a console error (410 Gone): expected here.
  const { page } = await newWatchedContext(
    browser,
    'resolved',
    { viewport: { width: 1280, height: 900 } },
    { expectConsoleErrors: true },
  );
  await gotoOk(page, ALLOWED_PAGE, 'resolved');
  await inWidget(page, '.fd-bubble').click();
  const panel = inWidget(page, '.fd-panel');
  must(await visible(panel), 'resolved: the panel opens');
  await ask(page, QUESTION, 'resolved, first conversation');
  must((await resolveAll()) >= 1, 'resolved: the team resolves the conversation');
  await page.reload({ waitUntil: 'load' });
  if (!(await visible(panel, 3000))) await inWidget(page, '.fd-bubble').click();
  await showsClosed(page, 'resolved', QUESTION);
  await startsNew(page, 'resolved');
  await ask(page, QUESTION, 'resolved, new conversation');

  // Resolved while the page is open: the next message says so, the one after
  // goes to a new conversation.
  must((await resolveAll()) === 1, 'resolved: the team resolves the new conversation');
  const input = inWidget(page, '.fd-input');
  await input.fill('Are you still there?');
  await input.press('Enter');
  check(
    await visible(inWidget(page, '.fd-error', { hasText: 'closed' }), 15000),
    'resolved: sending to a closed conversation says it is closed',
  );
  await ask(page, QUESTION, 'resolved, after the refusal');
  await shot(page, 'widget-resolved.png');

  // Erased by the team while the page was away: a reload forgets it as well
  // (the transcript answers 404) and the next question starts a new one.
  must((await eraseOpen()) === 1, 'erased: the team erases the open conversation');
  await reloadsAfresh(page, 'erased', 'erased');
  check(
    (await inWidget(page, '.fd-error').count()) === 0,
    'erased: the fresh start shows no error',
  );
  await ask(page, QUESTION, 'erased, new conversation');
  must((await eraseOpen()) === 1, 'erased: the question after it went to a new conversation');
}

/** The conversation the team closed, shown to read: its messages (`said` among
 * them), a line saying it was closed, the message box at rest, and a button to
 * start a new one. */
async function showsClosed(page, label, said) {
  must(
    await visible(inWidget(page, '.fd-note', { hasText: 'closed this conversation' }), 15000),
    `${label}: a reload shows the conversation was closed`,
  );
  check(
    await visible(inWidget(page, '.fd-message.fd-visitor', { hasText: said }), 5000),
    `${label}: the closed conversation is still there to read`,
  );
  check(await inWidget(page, '.fd-input').isDisabled(), `${label}: the closed conversation takes no more messages`);
  check(
    await visible(inWidget(page, '.fd-start', { hasText: 'Start a new conversation' }), 5000),
    `${label}: a button starts a new conversation`,
  );
  const bottom = await page.evaluate(() => {
    const l = document.getElementById('frontdesk-widget').shadowRoot.querySelector('.fd-messages');
    return l.scrollHeight - l.scrollTop - l.clientHeight;
  });
  check(bottom <= 2, `${label}: the closing line is in view`, `${bottom}px below`);
}

/** "Start a new conversation": the closed one makes way for the greeting. */
async function startsNew(page, label) {
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/conversations'), {
      timeout: NAV_TIMEOUT,
    }),
    inWidget(page, '.fd-start').click(),
  ]);
  must(res.status() === 201, `${label}: "Start a new conversation" starts one`, `got ${res.status()}`);
  must(await visible(inWidget(page, '.fd-message.fd-agent'), 10000), `${label}: the new conversation greets`);
  check(
    (await inWidget(page, '.fd-message.fd-visitor').count()) === 0 && (await inWidget(page, '.fd-note').count()) === 0,
    `${label}: the new conversation starts empty`,
  );
  check(await inWidget(page, '.fd-input').isEnabled(), `${label}: the message box takes messages again`);
}

/** Reloads the page: the panel shows the greeting and none of the conversation
 * the team ended (`how`: erased). */
async function reloadsAfresh(page, label, how) {
  await page.reload({ waitUntil: 'load' });
  if (!(await visible(inWidget(page, '.fd-panel'), 3000))) await inWidget(page, '.fd-bubble').click();
  must(await visible(inWidget(page, '.fd-message.fd-agent'), 15000), `${label}: the greeting appears`);
  await page.waitForTimeout(500);
  check(
    (await inWidget(page, '.fd-message.fd-visitor').count()) === 0,
    `${label}: a reload does not bring the ${how} conversation back`,
  );
}

/** The newest team reply is formatted: bold text, a link that opens apart. */
async function showsMarkdown(page, label) {
  const staff = await page.evaluate(() => {
    const all = document.getElementById('frontdesk-widget').shadowRoot.querySelectorAll('.fd-message.fd-staff');
    const m = all[all.length - 1];
    const a = m?.querySelector('a');
    return {
      text: m?.textContent || '',
      strong: m?.querySelector('strong')?.textContent || '',
      href: a?.href || '',
      rel: a?.rel || '',
      target: a?.target || '',
    };
  });
  check(staff.strong === 'bring the bike in today', `${label}: the team's **bold** is bold`, JSON.stringify(staff));
  check(!staff.text.includes('**'), `${label}: no Markdown markers are left in the team's reply`, staff.text);
  check(
    staff.href === 'https://harbor-bikes.example/hours' && staff.target === '_blank' && staff.rel.includes('noopener'),
    `${label}: the team's bare link is a link, opening in a new tab`,
    JSON.stringify(staff),
  );
}

/** The conversation reads in time order: the agent's answers, then the note
 * that a person was asked for, then the team's reply. */
async function inTimeOrder(page, label) {
  const order = await page.evaluate((note) => {
    const items = [...document.getElementById('frontdesk-widget').shadowRoot.querySelector('.fd-messages').children];
    const kind = (e) =>
      e.classList.contains('fd-staff')
        ? 'staff'
        : e.classList.contains('fd-agent')
          ? 'agent'
          : e.classList.contains('fd-visitor')
            ? 'visitor'
            : e.textContent === note
              ? 'note'
              : 'other';
    return items.map(kind);
  }, NOTE);
  const at = order.indexOf('note');
  check(
    at > order.lastIndexOf('agent') && at < order.indexOf('staff') && order.filter((k) => k === 'note').length === 1,
    `${label}: the note that a person was asked comes once, after the agent's answers and before the team's reply`,
    order.join(' '),
  );
}

async function teamSite(browser) {
  // 7. A person from the team answers from the ticket: the open widget shows it.
  const { page } = await newWatchedContext(browser, 'team reply', { viewport: { width: 1280, height: 900 } });
  await gotoOk(page, ALLOWED_PAGE, 'team reply');
  await inWidget(page, '.fd-bubble').click();
  must(await visible(inWidget(page, '.fd-panel')), 'team reply: the panel opens');
  await ask(page, QUESTION, 'team reply, question');
  const handoff = inWidget(page, '.fd-footer .fd-handoff');
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/escalate'), {
      timeout: NAV_TIMEOUT,
    }),
    handoff.click(),
  ]);
  must(res.status() === 200, 'team reply: the visitor asks for a person');
  const saved = await page.evaluate((key) => localStorage.getItem(key), `frontdesk:conv:${ORG}/${AGENT}`);
  must(Boolean(saved), 'team reply: the widget keeps its conversation');
  const conversationId = JSON.parse(saved).id;
  const auth = { Authorization: `Bearer ${API_KEY}` };
  // Written in Markdown, as the team's reply box allows.
  const REPLY = 'Hi, this is Sam from the shop: **bring the bike in today**. Hours: https://harbor-bikes.example/hours';
  await replyFromTicket(conversationId, REPLY, 'team reply');
  check(
    await visible(inWidget(page, '.fd-message.fd-staff', { hasText: 'bring the bike in today' }), 15000),
    'team reply: the reply appears in the open widget, labelled as the team',
  );
  await showsMarkdown(page, 'team reply');
  // The visitor answers the person: the agent does not talk over the team.
  const ack = await ask(page, 'Thanks, I will come by at 5.', 'team reply, answer');
  check(ack.text.includes('team has your message'), 'team reply: the agent leaves the answer to the team', JSON.stringify(ack.text));
  await shot(page, 'widget-team-reply.png');

  // A reload draws the conversation in the order it happened: the note that
  // a person was asked for comes before the team's reply, not after it.
  await page.reload({ waitUntil: 'load' });
  if (!(await visible(inWidget(page, '.fd-panel'), 3000))) await inWidget(page, '.fd-bubble').click();
  must(
    await visible(inWidget(page, '.fd-message.fd-staff', { hasText: 'bring the bike in today' }), 15000),
    'team reply: a reload shows the team\'s reply',
  );
  await inTimeOrder(page, 'team reply, reloaded');
  await showsMarkdown(page, 'team reply, reloaded');

  // Solved, the open widget says the conversation is closed; a later reply
  // from the team opens it again and appears in the same widget.
  await solveTicket(conversationId, 'team reply');
  check(
    await visible(inWidget(page, '.fd-note', { hasText: 'closed this conversation' }), 15000),
    'team reply: solving the ticket closes the conversation in the open widget',
  );
  check(await inWidget(page, '.fd-input').isDisabled(), 'team reply: the closed conversation takes no more messages');
  check(await visible(inWidget(page, '.fd-start'), 5000), 'team reply: a button offers a new conversation');
  await shot(page, 'widget-closed.png');
  // Markup in the team's reply is shown as text, as the agent's is.
  const AGAIN = `Sam again: one more thing, we found your lock. ${XSS}`;
  await replyFromTicket(conversationId, AGAIN, 'team reply after solving');
  check(
    await visible(inWidget(page, '.fd-message.fd-staff', { hasText: AGAIN }), 25000),
    'team reply: a reply after solving still reaches the open widget',
  );
  check(
    await visible(inWidget(page, '.fd-note', { hasText: 'open once more' }), 5000),
    'team reply: the widget says the conversation is open again',
  );
  check(
    (await inWidget(page, '.fd-input').isEnabled()) && (await inWidget(page, '.fd-start').count()) === 0,
    'team reply: open again, it takes messages and offers no new conversation',
  );
  const imgs = await page.evaluate(() => document.getElementById('frontdesk-widget').shadowRoot.querySelectorAll('img').length);
  check(imgs === 0, 'team reply: HTML in the team\'s reply creates no element', `${imgs} <img>`);
  await shot(page, 'widget-reopened.png');

  // 8. The team takes a conversation over without the visitor asking: once the
  //    visitor writes, the widget learns it and shows the team's replies.
  const { page: other } = await newWatchedContext(browser, 'team takeover', { viewport: { width: 1280, height: 900 } });
  await gotoOk(other, ALLOWED_PAGE, 'team takeover');
  await inWidget(other, '.fd-bubble').click();
  await ask(other, QUESTION, 'team takeover, question');
  const stored = await other.evaluate((key) => localStorage.getItem(key), `frontdesk:conv:${ORG}/${AGENT}`);
  must(Boolean(stored), 'team takeover: the widget keeps its conversation');
  const takenId = JSON.parse(stored).id;
  const put = await fetch(url(`/api/v1/conversations/${takenId}/status`), {
    method: 'PUT',
    headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ status: 'escalated' }),
  });
  must(put.ok, 'team takeover: the team escalates the conversation', `got ${put.status}`);
  const TAKEOVER = 'Sam here: I have taken this over, your bike is ready.';
  await replyFromTicket(takenId, TAKEOVER, 'team takeover');
  const asked = await ask(other, 'Is anyone there?', 'team takeover, the visitor writes');
  check(asked.text.includes('team has your message'), 'team takeover: the agent leaves it to the team', JSON.stringify(asked.text));
  check(
    await visible(inWidget(other, '.fd-message.fd-staff', { hasText: TAKEOVER }), 15000),
    'team takeover: the team\'s reply appears without a reload',
  );

  // 9. On the chat page: the visitor asks for a person, the team answers in
  //    Markdown and solves the ticket; the visitor, coming back later, reads
  //    the closed conversation and starts a new one.
  const { page: visitor } = await newWatchedContext(browser, 'team on the chat page', { viewport: { width: 1280, height: 900 } });
  const chatPath = `/c/${encodeURIComponent(ORG)}/${encodeURIComponent(AGENT)}`;
  await gotoOk(visitor, url(chatPath), 'team on the chat page');
  must(await visible(inWidget(visitor, '.fd-message.fd-agent'), 15000), 'chat page team: the greeting appears');
  await ask(visitor, QUESTION, 'chat page team, question');
  await Promise.all([
    visitor.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/escalate'), {
      timeout: NAV_TIMEOUT,
    }),
    inWidget(visitor, '.fd-footer .fd-handoff').click(),
  ]);
  const pageConv = JSON.parse(await visitor.evaluate((key) => localStorage.getItem(key), `frontdesk:conv:${ORG}/${AGENT}`)).id;
  await replyFromTicket(pageConv, REPLY, 'chat page team');
  must(
    await visible(inWidget(visitor, '.fd-message.fd-staff', { hasText: 'bring the bike in today' }), 15000),
    'chat page team: the team\'s reply appears on the chat page',
  );
  await showsMarkdown(visitor, 'chat page team');
  await solveTicket(pageConv, 'chat page team');
  await visitor.reload({ waitUntil: 'load' });
  await showsClosed(visitor, 'chat page team, closed', QUESTION);
  check(
    await visible(inWidget(visitor, '.fd-message.fd-staff', { hasText: 'bring the bike in today' }), 5000),
    'chat page team, closed: the team\'s reply is still there to read',
  );
  await showsMarkdown(visitor, 'chat page team, closed');
  await inTimeOrder(visitor, 'chat page team, closed');
  await shot(visitor, 'chat-page-closed.png', false);
  await startsNew(visitor, 'chat page team');
  await ask(visitor, QUESTION, 'chat page team, new conversation');
  await shot(visitor, 'chat-page-new.png', false);
}

// The team answers the conversation's ticket through the API.
async function ticketOf(conversationId, label) {
  const auth = { Authorization: `Bearer ${API_KEY}` };
  const list = await (await fetch(url('/api/v1/tickets?status=all&per_page=200'), { headers: auth })).json();
  const ticket = (list.data || []).find((t) => t.conversationId === conversationId);
  must(Boolean(ticket), `${label}: the conversation has a ticket`, JSON.stringify(list));
  return ticket.id;
}

async function replyFromTicket(conversationId, content, label) {
  const auth = { Authorization: `Bearer ${API_KEY}` };
  const ticket = await ticketOf(conversationId, label);
  const sent = await fetch(url(`/api/v1/tickets/${ticket}/replies`), {
    method: 'POST',
    headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ content }),
  });
  must(sent.status === 201, `${label}: the team replies from the ticket`, `got ${sent.status}`);
}

// The team marks the conversation's ticket solved, which closes it to the visitor.
async function solveTicket(conversationId, label) {
  const auth = { Authorization: `Bearer ${API_KEY}` };
  const ticket = await ticketOf(conversationId, label);
  const res = await fetch(url(`/api/v1/tickets/${ticket}`), {
    method: 'PATCH',
    headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ status: 'solved' }),
  });
  must(res.ok, `${label}: the team solves the ticket`, `got ${res.status}`);
}

// Resolves every conversation not resolved yet, through the API; returns how many.
/** Calls `act(conversation)` on every conversation not resolved; returns how many. */
async function eachOpen(label, act) {
  const auth = { Authorization: `Bearer ${API_KEY}` };
  const res = await fetch(url('/api/v1/conversations?per_page=200'), { headers: auth });
  must(res.ok, `${label}: GET /api/v1/conversations`, `got ${res.status}`);
  const open = (await res.json()).data.filter((c) => c.status !== 'resolved');
  for (const c of open) await act(c, auth);
  return open.length;
}

async function resolveAll() {
  return eachOpen('resolved', async (c, auth) => {
    const put = await fetch(url(`/api/v1/conversations/${c.id}/status`), {
      method: 'PUT',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ status: 'resolved' }),
    });
    must(put.ok, `resolved: PUT status of conversation ${c.id}`, `got ${put.status}`);
  });
}

/** Erases every conversation not resolved; returns how many there were. */
async function eraseOpen() {
  return eachOpen('erased', async (c, auth) => {
    const del = await fetch(url(`/api/v1/conversations/${c.id}`), { method: 'DELETE', headers: auth });
    must(del.status === 204, `erased: DELETE conversation ${c.id}`, `got ${del.status}`);
  });
}

async function outageSite(browser) {
  // 7. Frontdesk answers 502 for a moment (a deploy): a reload keeps the
  // conversation, says the chat cannot be reached, and "Try again" brings the
  // same conversation back once the server answers. The failed loads show up
  // as console errors: expected here.
  const { ctx, page, w } = await newWatchedContext(
    browser,
    'outage',
    { viewport: { width: 1280, height: 900 } },
    { expectConsoleErrors: true },
  );
  await gotoOk(page, ALLOWED_PAGE, 'outage');
  await inWidget(page, '.fd-bubble').click();
  must(await visible(inWidget(page, '.fd-panel')), 'outage: the panel opens');
  await ask(page, QUESTION, 'outage');
  const visitorKeys = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('frontdesk:visitor')));
  check(
    visitorKeys.length === 1 && visitorKeys[0] === `frontdesk:visitor:${ORG}`,
    'visitor id: kept per organization, so businesses cannot link one browser',
    JSON.stringify(visitorKeys),
  );

  const transcript = (u) => /\/api\/v1\/chat\/.+\/conversations\/[^/]+\/messages$/.test(u.pathname);
  await page.route(transcript, (route) =>
    route.request().method() === 'GET'
      ? route.fulfill({
          status: 502,
          contentType: 'text/plain',
          headers: { 'access-control-allow-origin': new URL(ALLOWED_PAGE).origin },
          body: 'Bad Gateway',
        })
      : route.continue(),
  );
  await page.reload({ waitUntil: 'load' });
  if (!(await visible(inWidget(page, '.fd-panel'), 3000))) await inWidget(page, '.fd-bubble').click();
  must(
    await visible(inWidget(page, '.fd-error', { hasText: 'could not be reached' }), 10000),
    'outage: a reload while the server fails says the chat cannot be reached',
  );
  check(
    (await inWidget(page, '.fd-message.fd-visitor').count()) === 0,
    'outage: no fresh conversation was started in its place',
  );
  // A new tab of the site (or the browser reopened) finds the conversation too.
  const kept = await page.evaluate((key) => localStorage.getItem(key), `frontdesk:conv:${ORG}/${AGENT}`);
  check(Boolean(kept) && JSON.parse(kept).savedAt > 0, 'outage: the conversation is kept for other tabs', String(kept));
  await shot(page, 'widget-outage.png');
  await page.unroute(transcript);
  // The 502s were ours.
  w.serverErrors = w.serverErrors.filter((line) => !line.endsWith('-> 502'));
  await inWidget(page, '.fd-retry').click();
  check(
    await visible(inWidget(page, '.fd-message.fd-visitor', { hasText: QUESTION }), 10000),
    'outage: "Try again" brings the same conversation back',
  );

  // Another tab of the same site carries on with the same conversation.
  const tab = await ctx.newPage();
  await gotoOk(tab, ALLOWED_PAGE, 'second tab');
  if (!(await visible(inWidget(tab, '.fd-panel'), 3000))) await inWidget(tab, '.fd-bubble').click();
  check(
    await visible(inWidget(tab, '.fd-message.fd-visitor', { hasText: QUESTION }), 10000),
    'second tab: the conversation goes on in another tab',
  );
  await tab.close();
}

async function refusedSite(browser) {
  // 3. The same page on an origin the agent does not allow. The refused request
  // shows up as console errors (CORS / 403): expected here.
  const { page } = await newWatchedContext(
    browser,
    'refused origin',
    { viewport: { width: 1280, height: 900 } },
    { expectConsoleErrors: true },
  );
  await gotoOk(page, REFUSED_PAGE, 'refused');
  const bubble = inWidget(page, '.fd-bubble');
  must(await visible(bubble), 'refused: the bubble still appears');
  await bubble.click();
  must(await visible(inWidget(page, '.fd-panel')), 'refused: the bubble opens the panel');
  must(
    await visible(inWidget(page, '.fd-error', { hasText: UNAVAILABLE }), 15000),
    `refused: the panel says "${UNAVAILABLE}"`,
  );
  check(
    await visible(inWidget(page, '.fd-bubble[data-state=unavailable]'), 5000),
    'refused: the bubble is marked data-state="unavailable"',
  );
  check(await inWidget(page, '.fd-input').isDisabled(), 'refused: the message box is disabled');
  await shot(page, 'widget-unavailable.png');
}

async function chatPage(browser) {
  // 5. Page mode: Frontdesk's own public chat page, under its CSP.
  const { page } = await newWatchedContext(browser, 'chat page', { viewport: { width: 1280, height: 900 } });
  const path = `/c/${encodeURIComponent(ORG)}/${encodeURIComponent(AGENT)}`;
  await gotoOk(page, url(path), 'chat page');
  must(await visible(inWidget(page, '.fd-panel')), 'chat page: the chat panel is mounted');
  check((await inWidget(page, '.fd-bubble').count()) === 0, 'chat page: no bubble in page mode');
  must(await visible(inWidget(page, '.fd-message.fd-agent'), 15000), 'chat page: the greeting appears');
  check(await inWidget(page, '.fd-input').isEnabled(), 'chat page: the message box is enabled');
  const empty = await pageLayout(page);
  await shot(page, 'chat-page.png');

  // Many messages, one a 4,000-character word: the chat stays one screen
  // high and as wide as it was, its messages scroll inside, the newest in
  // view, and the message box stays on screen.
  await ask(page, 'y'.repeat(4000), 'chat page, a very long word');
  for (const q of [QUESTION, 'Do you repair bikes?', QUESTION]) await ask(page, q, 'chat page, more messages');
  await fitsTheScreen(page, 'chat page', empty);
  await shot(page, 'chat-page-filled.png', false);
  await page.reload({ waitUntil: 'load' });
  must(await visible(inWidget(page, '.fd-message.fd-visitor'), 15000), 'chat page: a reload redraws the conversation');
  await page.waitForTimeout(300);
  await fitsTheScreen(page, 'chat page, reloaded', empty);

  // A phone, with a conversation of its own.
  const { page: phone } = await newWatchedContext(browser, 'chat page on a phone', {
    viewport: { width: 390, height: 844 },
    isMobile: true,
    hasTouch: true,
  });
  await gotoOk(phone, url(path), 'chat page on a phone');
  must(await visible(inWidget(phone, '.fd-message.fd-agent'), 15000), 'chat page on a phone: the greeting appears');
  const phoneEmpty = await pageLayout(phone);
  for (const q of [QUESTION, 'y'.repeat(4000), QUESTION]) await ask(phone, q, 'chat page on a phone');
  await fitsTheScreen(phone, 'chat page on a phone', phoneEmpty);
  await shot(phone, 'chat-page-phone.png', false);
}

// Where the chat page's parts are, in CSS pixels of the viewport.
function pageLayout(page) {
  return page.evaluate(() => {
    const r = document.getElementById('frontdesk-widget').shadowRoot;
    const list = r.querySelector('.fd-messages');
    const panel = r.querySelector('.fd-panel').getBoundingClientRect();
    const input = r.querySelector('.fd-input').getBoundingClientRect();
    return {
      pageHigh: document.documentElement.scrollHeight - window.innerHeight,
      pageWide: document.documentElement.scrollWidth - window.innerWidth,
      width: Math.round(panel.width),
      panelBottom: panel.bottom - window.innerHeight,
      inputTop: input.top,
      inputBottom: input.bottom - window.innerHeight,
      scrolls: list.scrollHeight - list.clientHeight,
      belowNewest: list.scrollHeight - list.scrollTop - list.clientHeight,
      listWide: list.scrollWidth - list.clientWidth,
    };
  });
}

async function fitsTheScreen(page, label, empty) {
  const l = await pageLayout(page);
  const detail = JSON.stringify(l);
  check(l.pageHigh <= 0 && l.panelBottom <= 0, `${label}: the chat fits the screen, the page does not grow`, detail);
  check(l.scrolls > 0, `${label}: the messages scroll inside the chat`, detail);
  check(l.belowNewest <= 2, `${label}: the newest message is in view`, detail);
  check(l.inputTop >= 0 && l.inputBottom <= 0, `${label}: the message box is on screen`, detail);
  check(l.pageWide <= 0 && l.listWide <= 0, `${label}: a very long word wraps in its bubble`, detail);
  check(Math.abs(l.width - empty.width) <= 1, `${label}: the chat keeps its width (${empty.width}px empty)`, detail);
}

async function part(name, fn, browser) {
  try {
    await fn(browser);
  } catch (e) {
    // A failed `must` was already reported; anything else is unexpected.
    if (!(e instanceof StepFailed)) {
      failures.push(`${name}: ${e.message}`);
      console.log(`FAIL: ${name}: ${e.message}`);
    }
  }
}

let browser;
try {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await startHostSite();
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
  const parts = {
    'allowed origin': allowedSite,
    'refused origin': refusedSite,
    'chat page': chatPage,
    team: teamSite,
    resolved: resolvedSite,
    outage: outageSite,
  };
  // PARTS picks some (the resolved part closes conversations other scripts read).
  const chosen = process.env.PARTS ? process.env.PARTS.split(',') : ['allowed origin', 'refused origin', 'chat page', 'outage'];
  for (const name of chosen) {
    must(name in parts, `PARTS: ${name} is a part of this script`);
    await part(name, parts[name], browser);
  }
  checkWatchers();
} catch (e) {
  failures.push(`setup: ${e.message}`);
  console.log(`FAIL: setup: ${e.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const s of hostServers) s.close();
}

if (screenshots.length) console.log(`screenshots:\n${screenshots.map((p) => `  ${p}`).join('\n')}`);
if (failures.length) {
  console.error(`\n${failures.length} check(s) failed:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  process.exit(1);
}
console.log('all widget checks passed');
