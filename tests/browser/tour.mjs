// Headless-Chromium tour of every page in /app, as the demo organization's
// owner: each page in the navigation answers 200 with no console, page or CSP
// errors and fits a desktop and a phone screen; every GET form (test retrieval,
// conversation and audit filters) submitted as the page offers it answers 200;
// the agent page's "test retrieval" finds the demo knowledge base; axe-core
// finds no serious WCAG 2.1 AA problem on them nor on the public pages
// (landing, sign-in, sign-up, reset, the chat page at CHAT_PATH). A screenshot
// of each app page at phone size.
//
//   BASE_URL=http://127.0.0.1:5098 EMAIL=... PASSWORD=... [SCREENSHOT_DIR=/tmp/shots] \
//     [CHROMIUM_PATH=/usr/bin/chromium] node tests/browser/tour.mjs
//
// Prints `ok: ...` per passed check and `FAIL: ...` per failed one; exits 1 if
// anything failed.

import { join } from 'node:path';
import { createRequire } from 'node:module';
import { SCREENSHOT_DIR, check, finish, launch, requireEnv, url } from './harness.mjs';

const { BASE_URL, EMAIL, PASSWORD } = requireEnv(['BASE_URL', 'EMAIL', 'PASSWORD']);
const ORIGIN = new URL(BASE_URL).origin;

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/// A signed-in page that records what goes wrong on it.
async function signedIn(browser, options) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page: ${e}`));
  page.on('response', (r) => {
    if (r.url().startsWith(ORIGIN) && r.status() >= 400) {
      problems.push(`${r.request().method()} ${new URL(r.url()).pathname} -> ${r.status()}`);
    }
  });
  await page.goto(url('/login'));
  await page.fill('input[name=email]', EMAIL);
  await page.fill('input[name=password]', PASSWORD);
  await Promise.all([page.waitForURL(/\/app$/), page.click('form[action="/login"] button[type=submit]')]);
  return { context, page, problems };
}

/// WCAG 2 A/AA problems axe-core finds on the page, serious or worse.
async function accessibilityProblems(page) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
    }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

async function overflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

const browser = await launch();
try {
  const desktop = await signedIn(browser, { viewport: { width: 1280, height: 900 } });
  const phone = await signedIn(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  // axe-core is injected as a script, which the pages' CSP rightly refuses:
  // this context alone lets it in (the two above keep the CSP).
  const audit = await signedIn(browser, { viewport: { width: 1280, height: 900 }, bypassCSP: true });
  const links = await desktop.page.locator('nav.app-nav a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  check(links.length >= 8, 'the navigation lists the app pages', JSON.stringify(links));

  for (const path of links) {
    for (const [label, view] of [['desktop', desktop], ['phone', phone]]) {
      const res = await view.page.goto(url(path), { waitUntil: 'load' });
      check(res?.status() === 200, `${path} (${label}) answers 200`, `got ${res?.status()}`);
      const wide = await overflow(view.page);
      check(wide <= 0, `${path} (${label}) fits the screen`, `${wide}px wider`);
      const heading = (await view.page.locator('main h1').first().textContent())?.trim();
      check(Boolean(heading), `${path} (${label}) has a heading`);
    }
    await audit.page.goto(url(path), { waitUntil: 'load' });
    const problems = await accessibilityProblems(audit.page);
    check(
      problems.length === 0,
      `${path}: no serious accessibility problems (axe-core, WCAG 2.1 AA)`,
      problems.map((p) => `${p.id} (${p.impact}): ${p.help} at ${p.nodes.join(', ')}`).join(' | '),
    );
    const name = path === '/app' ? 'dashboard' : path.replace('/app/', '').replace(/\//g, '-');
    await phone.page.screenshot({ path: join(SCREENSHOT_DIR, `tour-${name}-phone.png`), fullPage: true });
  }

  // The public pages a visitor or a newcomer sees, signed out.
  const visitor = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
  const outside = await visitor.newPage();
  const chatPage = process.env.CHAT_PATH;
  for (const path of ['/', '/login', '/signup', '/forgot-password', ...(chatPage ? [chatPage] : [])]) {
    const res = await outside.goto(url(path), { waitUntil: 'load' });
    check(res?.status() === 200, `${path} answers 200`, `got ${res?.status()}`);
    const problems = await accessibilityProblems(outside);
    check(
      problems.length === 0,
      `${path}: no serious accessibility problems (axe-core, WCAG 2.1 AA)`,
      problems.map((p) => `${p.id} (${p.impact}): ${p.help} at ${p.nodes.join(', ')}`).join(' | '),
    );
  }
  await visitor.close();

  // Every GET form, submitted as offered (selects on their first choice).
  const page = desktop.page;
  await page.goto(url('/app/agents'));
  const agentLink = page.locator('main a[href^="/app/agents/"]').first();
  check((await agentLink.count()) === 1, 'the demo agent is listed');
  await Promise.all([page.waitForURL(/\/app\/agents\/\d+$/), agentLink.click()]);

  // A document still indexing: the list follows it without reloading the
  // page, so what is being typed in the agent's settings stays.
  check((await page.locator('#knowledge[data-live]').count()) === 1, 'agent: a list still indexing is live');
  await page.evaluate(() => {
    window.frontdeskNotReloaded = true;
  });
  await page.fill('#agent-greeting', 'Typed while the list was indexing');
  await page.locator('#knowledge').screenshot({ path: join(SCREENSHOT_DIR, 'tour-agent-indexing.png') });
  const stuck = page.locator('#knowledge tr', { hasText: 'Stuck upload' });
  const action = await stuck.locator('form[action$="/delete"]').getAttribute('action');
  const csrf = await stuck.locator('input[name=csrf_token]').first().inputValue();
  // Deleted from elsewhere (another tab, a teammate): the list must notice.
  const removed = await desktop.context.request.post(url(action), {
    form: { csrf_token: csrf },
    headers: { Origin: ORIGIN, Referer: page.url() },
  });
  check(removed.ok(), 'agent: the unfinished document is deleted', `${removed.status()}`);
  const settled = await page
    .waitForFunction(
      () => !document.querySelector('#knowledge[data-live]') && !document.querySelector('#knowledge').textContent.includes('Stuck upload'),
      null,
      { timeout: 15000 },
    )
    .then(() => true, () => false);
  check(settled, 'agent: the live list shows the change and stops following');
  check(
    (await page.inputValue('#agent-greeting')) === 'Typed while the list was indexing' &&
      (await page.evaluate(() => window.frontdeskNotReloaded === true)),
    'agent: the page was not reloaded and the typed greeting stays',
  );
  await page.fill('form.test-retrieval input[name=q]', 'How long does shipping take?');
  const [retrieval] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname.startsWith('/app/agents/') && r.request().method() === 'GET'),
    page.click('form.test-retrieval button[type=submit]'),
  ]);
  check(retrieval.status() === 200, 'test retrieval answers 200', `${retrieval.status()}`);
  await page.waitForLoadState('load');
  check(/score/i.test(await page.textContent('main')), 'test retrieval shows passages with scores');
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'tour-agent.png'), fullPage: true });

  // Copy buttons: the widget's embed snippet, and a new API key shown once.
  await desktop.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: ORIGIN });
  const clipboardAfter = async (selector) => {
    const button = page.locator(`button[data-copy="${selector}"]`);
    if (!(await button.isVisible())) return null;
    await button.click();
    await page.waitForFunction((id) => document.querySelector(`button[data-copy="${id}"]`).textContent === 'Copied', selector, { timeout: 5000 });
    return page.evaluate(() => navigator.clipboard.readText());
  };
  const snippet = (await page.textContent('#embed-code'))?.trim();
  const copiedSnippet = await clipboardAfter('embed-code');
  check(
    Boolean(snippet) && copiedSnippet?.trim() === snippet && snippet.includes('<script'),
    'agent: "Copy the snippet" puts the embed snippet on the clipboard',
    JSON.stringify(copiedSnippet),
  );
  await page.goto(url('/app/api-keys'), { waitUntil: 'load' });
  await page.fill('#key-name', 'Tour copy test');
  await Promise.all([page.waitForLoadState('load'), page.click('form[action="/app/api-keys"] button[type=submit]')]);
  await page.waitForSelector('#new-key');
  const newKey = await page.inputValue('#new-key');
  const copiedKey = await clipboardAfter('new-key');
  check(
    newKey.startsWith('fd_') && copiedKey === newKey,
    'API keys: Copy puts the new key on the clipboard',
    `${JSON.stringify(copiedKey)} vs ${JSON.stringify(newKey)}`,
  );
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'tour-api-key-copied.png') });

  for (const [path, form] of [
    ['/app/conversations', 'form.filters'],
    ['/app/tickets', 'form.filters'],
    ['/app/audit', 'form.filter-form'],
  ]) {
    await page.goto(url(path));
    const [res] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === path && r.request().method() === 'GET'),
      page.click(`${form} button[type=submit]`),
    ]);
    check(res.status() === 200, `${path}: the filter form as offered answers 200`, `${res.status()}`);
  }

  // A ticket: the visitor's question, the reply box, the timeline.
  await page.goto(url('/app/tickets'));
  const ticketLink = page.locator('main a[href^="/app/tickets/"]').first();
  check((await ticketLink.count()) === 1, 'the hand-off is in the ticket queue');
  const ticketPath = await ticketLink.getAttribute('href');
  for (const [label, view] of [['desktop', desktop], ['phone', phone]]) {
    const res = await view.page.goto(url(ticketPath), { waitUntil: 'load' });
    check(res?.status() === 200, `${ticketPath} (${label}) answers 200`, `got ${res?.status()}`);
    const wide = await overflow(view.page);
    check(wide <= 0, `${ticketPath} (${label}) fits the screen`, `${wide}px wider`);
    check(
      (await view.page.locator('form[action$="/reply"] textarea').count()) === 1,
      `${ticketPath} (${label}) offers a reply box`,
    );
    await view.page.screenshot({ path: join(SCREENSHOT_DIR, `tour-ticket-${label}.png`), fullPage: true });
  }
  // The ticket's conversation, whose transcript has a 4,000-character word.
  const conversationPath = await page.locator('.page-head a[href^="/app/conversations/"]').first().getAttribute('href');
  for (const [label, view] of [['desktop', desktop], ['phone', phone]]) {
    const res = await view.page.goto(url(conversationPath), { waitUntil: 'load' });
    check(res?.status() === 200, `${conversationPath} (${label}) answers 200`, `got ${res?.status()}`);
    const wide = await overflow(view.page);
    check(wide <= 0, `${conversationPath} (${label}): a very long word wraps in its bubble`, `${wide}px wider`);
    await view.page.screenshot({ path: join(SCREENSHOT_DIR, `tour-conversation-${label}.png`), fullPage: true });
  }
  await audit.page.goto(url(ticketPath), { waitUntil: 'load' });
  const ticketProblems = await accessibilityProblems(audit.page);
  check(
    ticketProblems.length === 0,
    `${ticketPath}: no serious accessibility problems (axe-core, WCAG 2.1 AA)`,
    ticketProblems.map((p) => `${p.id} (${p.impact}): ${p.help} at ${p.nodes.join(', ')}`).join(' | '),
  );

  // A half-written reply is still there after a note was added (the note's
  // form sends the page again).
  await page.goto(url(ticketPath), { waitUntil: 'load' });
  await page.fill('#t-reply', 'Half a reply, kept for later');
  await page.fill('#t-note', 'Checked the order history.');
  await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'GET' && new URL(r.url()).pathname === ticketPath),
    page.click('form[action$="/notes"] button[type=submit]'),
  ]);
  await page.waitForLoadState('load');
  check(
    (await page.inputValue('#t-reply')) === 'Half a reply, kept for later' && (await page.inputValue('#t-note')) === '',
    'ticket: a half-written reply survives adding a note',
    `reply ${JSON.stringify(await page.inputValue('#t-reply'))}, note ${JSON.stringify(await page.inputValue('#t-note'))}`,
  );

  // A reply refused as a whole (a stale form token, as after signing in again
  // in another tab) gets an error page that cannot show it: it is still in the
  // box when the ticket is opened again, and gone once it was sent.
  const lost = 'A reply that must not be lost';
  const problemsBefore = desktop.problems.length;
  await page.fill('#t-reply', lost);
  await page.evaluate(() => {
    document.querySelector('form[action$="/reply"] input[name=csrf_token]').value = 'stale';
  });
  const [refused] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/reply')),
    page.click('form[action$="/reply"] button[type=submit]'),
  ]);
  await page.waitForLoadState('load');
  check(refused.status() === 403, 'ticket: a reply with a stale form token is refused', `${refused.status()}`);
  check(
    (await page.locator('main a.btn[href="/app"]').count()) === 1,
    'a refused form leads back to the dashboard, not the front page',
  );
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'tour-refused-form.png') });
  // That refusal (and the browser's console line about it) was the point.
  desktop.problems.splice(problemsBefore);
  await page.goto(url(ticketPath), { waitUntil: 'load' });
  check(
    (await page.inputValue('#t-reply')) === lost,
    'ticket: a reply refused as a whole is kept as a draft',
    JSON.stringify(await page.inputValue('#t-reply')),
  );
  await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'GET' && new URL(r.url()).pathname === ticketPath),
    page.click('form[action$="/reply"] button[type=submit]'),
  ]);
  await page.waitForLoadState('load');
  await page.goto(url(ticketPath), { waitUntil: 'load' });
  check(
    (await page.inputValue('#t-reply')) === '' && (await page.getByText(lost).count()) > 0,
    'ticket: a sent reply is shown as sent, not offered again as a draft',
    JSON.stringify(await page.inputValue('#t-reply')),
  );

  // The organization moves to a new address; a link to the old chat page
  // follows it there, and the visitor's conversation with it.
  if (chatPage) {
    const [, oldOrg, agentSlug] = chatPage.split('/').slice(1);
    await page.goto(url(chatPage), { waitUntil: 'load' });
    const stored = (key) => page.evaluate((k) => JSON.parse(localStorage.getItem(k) || 'null'), key);
    const oldKey = `frontdesk:conv:${oldOrg}/${agentSlug}`;
    await page.waitForFunction((k) => localStorage.getItem(k) !== null, oldKey, { timeout: 10000 });
    const before = await stored(oldKey);
    await page.goto(url('/app/organization'), { waitUntil: 'load' });
    await page.fill('#org-slug', 'tour-moved');
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'GET' && new URL(r.url()).pathname === '/app/organization'),
      page.click('form[action="/app/organization/address"] button[type=submit]'),
    ]);
    await page.waitForLoadState('load');
    check(
      (await page.locator('main code', { hasText: oldOrg }).count()) >= 1,
      'organization: the former address is listed after a move',
    );
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'tour-organization-moved.png'), fullPage: true });
    const res = await page.goto(url(chatPage), { waitUntil: 'load' });
    const newKey = `frontdesk:conv:tour-moved/${agentSlug}`;
    await page.waitForFunction((k) => localStorage.getItem(k) !== null, newKey, { timeout: 10000 }).catch(() => {});
    const landed = new URL(page.url());
    check(
      res?.status() === 200 && landed.pathname === `/c/tour-moved/${agentSlug}` && !landed.searchParams.has('fd_from'),
      'the old chat address leads to the new one',
      `got ${res?.status()} at ${landed}`,
    );
    const after = await stored(newKey);
    check(
      Boolean(before) && after?.id === before.id,
      "the visitor's conversation follows the move",
      `before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`,
    );
  }

  // The ticket's link in an email, opened while another organization of the
  // owner's is the current one: it asks before switching, then opens it.
  const { OTHER_ORG, TICKET_ORG } = process.env;
  if (OTHER_ORG && TICKET_ORG) {
    const workIn = async (p, org) => {
      await p.goto(url('/app'));
      await p.selectOption('#org-switch', org);
      await Promise.all([p.waitForURL(/\/app$/), p.click('header form[action="/app/switch"] button[type=submit]')]);
    };
    await workIn(audit.page, OTHER_ORG);
    await audit.page.goto(url(`${ticketPath}?org=${TICKET_ORG}`), { waitUntil: 'load' });
    const switchProblems = await accessibilityProblems(audit.page);
    check(
      switchProblems.length === 0,
      'the switch page: no serious accessibility problems (axe-core, WCAG 2.1 AA)',
      switchProblems.map((p) => `${p.id} (${p.impact}): ${p.help} at ${p.nodes.join(', ')}`).join(' | '),
    );
    await workIn(page, OTHER_ORG);
    const asked = await page.goto(url(`${ticketPath}?org=${TICKET_ORG}`), { waitUntil: 'load' });
    check(
      asked?.status() === 200 && (await page.locator('main form[action="/app/switch"]').count()) === 1,
      'an emailed ticket link into another organization asks before switching',
      `got ${asked?.status()}`,
    );
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'tour-switch-desktop.png'), fullPage: true });
    // The link's own address has the ticket's path too: wait for the one
    // without `?org=`, where the switch leads.
    await Promise.all([
      page.waitForURL((u) => {
        const at = new URL(u);
        return at.pathname === ticketPath && !at.searchParams.has('org');
      }),
      page.click('main form[action="/app/switch"] button[type=submit]'),
    ]);
    const replyBox = await page
      .locator('form[action$="/reply"] textarea')
      .waitFor({ state: 'visible', timeout: 10000 })
      .then(() => true)
      .catch(() => false);
    check(replyBox, 'switching from the link opens the ticket in its organization');
  }

  for (const [label, view] of [['desktop', desktop], ['phone', phone]]) {
    check(view.problems.length === 0, `${label}: no errors or 4xx/5xx along the way`, view.problems.join(' | '));
  }
} catch (e) {
  check(false, 'the tour ran to the end', e.message);
} finally {
  await browser.close();
}
finish();
