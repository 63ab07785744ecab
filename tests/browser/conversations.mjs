// Headless-Chromium check of the conversation views in /app: sign in, find the
// widget's conversation in the list (filters kept across pages), open its
// transcript and see the agent's Markdown formatted, the citations and the
// resolve button; phone-sized too. Screenshots of both.
//
//   BASE_URL=http://127.0.0.1:5098 EMAIL=owner@x.test PASSWORD=... EXPECT_TEXT=... \
//     EXPECT_CITATION=... [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM_PATH=/usr/bin/chromium] \
//     node tests/browser/conversations.mjs
//
// Prints `ok: ...` per passed check and `FAIL: ...` per failed one; exits 1 if
// anything failed.

import { join } from 'node:path';
import { SCREENSHOT_DIR, check, finish, launch, requireEnv, url } from './harness.mjs';

const { EMAIL, PASSWORD, EXPECT_TEXT, EXPECT_CITATION } = requireEnv(['BASE_URL', 'EMAIL', 'PASSWORD', 'EXPECT_TEXT', 'EXPECT_CITATION']);

async function signIn(context) {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  await page.goto(url('/login'));
  await page.fill('input[name=email]', EMAIL);
  await page.fill('input[name=password]', PASSWORD);
  await Promise.all([page.waitForURL(/\/app$/), page.click('form[action="/login"] button[type=submit]')]);
  return { page, problems };
}

const browser = await launch();
try {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const { page, problems } = await signIn(desktop);

  await page.click('nav.app-nav a[href="/app/conversations"]');
  await page.waitForURL(/\/app\/conversations/);
  // The visitor asked for a person: the team filters for exactly those.
  await page.selectOption('#f-status', 'escalated');
  await Promise.all([page.waitForURL(/status=escalated/), page.click('form.filters button[type=submit]')]);
  const rows = page.locator('section[aria-label="Conversations"] tbody tr');
  check(
    (await rows.count()) === 1,
    'the filtered list shows the escalated widget conversation',
    `${await rows.count()} rows at ${page.url()}: ${(await page.textContent('main')).replace(/\s+/g, ' ').slice(0, 600)}`,
  );
  check((await rows.first().textContent()).includes('widget'), 'the row names its channel');

  await Promise.all([page.waitForURL(/\/app\/conversations\/\d+$/), rows.first().locator('a').click()]);
  const agentBubble = page.locator('.bubble-agent .bubble-markdown', { hasText: EXPECT_TEXT }).first();
  const html = await agentBubble.innerHTML();
  check(html.includes('<strong>'), "the agent's Markdown is formatted, not shown raw", html.slice(0, 200));
  check(!(await agentBubble.textContent()).includes('**'), 'no Markdown markers are left in the text');
  check((await agentBubble.textContent()).includes(EXPECT_TEXT), `the reply says ${EXPECT_TEXT}`);
  const citations = await page.locator('.bubble-agent', { hasText: EXPECT_TEXT }).first().locator('.bubble-citations').textContent();
  check(citations.includes(EXPECT_CITATION), `the transcript cites ${EXPECT_CITATION}`, citations);
  check(await page.isVisible('button:has-text("Mark resolved")'), 'the team can resolve it from here');
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'conversation.png'), fullPage: true });

  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const mobile = await signIn(phone);
  await mobile.page.goto(page.url());
  const overflow = await mobile.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, 'the transcript fits a phone screen', `${overflow}px wider`);
  await mobile.page.screenshot({ path: join(SCREENSHOT_DIR, 'conversation-phone.png'), fullPage: true });

  const all = [...problems, ...mobile.problems];
  check(all.length === 0, 'no console or page errors', all.join(' | '));
} catch (e) {
  check(false, 'the conversation views ran to the end', e.message);
} finally {
  await browser.close();
}
finish();
