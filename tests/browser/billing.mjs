// Headless-Chromium check of the billing page: sign in, read the plan, usage
// meters and plans, start Checkout (Stripe's page is stood in for by a route
// handler, since this machine has no internet), and take screenshots.
//
//   BASE_URL=http://127.0.0.1:5098 EMAIL=owner@x.test PASSWORD=... MODE=free|subscribed \
//     [SCREENSHOT_DIR=/tmp/shots] [CHROMIUM_PATH=/usr/bin/chromium] node tests/browser/billing.mjs
//
// MODE=free expects the Free plan with upgrade buttons; MODE=subscribed expects
// the Pro plan, Manage billing and a paid invoice. Prints `ok: ...` per passed
// check and `FAIL: ...` per failed one; exits 1 if anything failed.

import { join } from 'node:path';
import { SCREENSHOT_DIR, check, finish, launch, requireEnv, url } from './harness.mjs';

const { EMAIL, PASSWORD } = requireEnv(['BASE_URL', 'EMAIL', 'PASSWORD']);
const MODE = process.env.MODE || 'free';

const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const cspViolations = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  // Stripe's hosted pages cannot be reached offline (and route handlers do not
  // see redirect targets): seeing the browser request them proves the redirect
  // was followed, i.e. the page's CSP form-action allows Stripe.
  const toStripe = (pattern, button) =>
    Promise.all([
      page.waitForRequest(pattern, { timeout: 10000 }).then((r) => r.url()),
      page.click(button).catch(() => {}),
    ]).then(([u]) => u);

  await page.goto(url('/login'));
  await page.fill('input[name=email]', EMAIL);
  await page.fill('input[name=password]', PASSWORD);
  await Promise.all([page.waitForURL(/\/app/), page.click('button[type=submit]')]);

  await page.click('nav.app-nav a[href="/app/billing"]');
  await page.waitForURL(/\/app\/billing/);
  const heading = await page.textContent('h1');
  check(heading.includes('Billing'), 'the billing page opens from the navigation', heading);
  const meters = await page.locator('meter').count();
  check(meters === 4, 'usage is drawn as four meters against the limits', `${meters}`);
  const usage = await page.textContent('.usage-list');
  check(/Agents/.test(usage) && /Messages this month/.test(usage), 'usage names agents and messages');

  if (MODE === 'free') {
    check((await page.textContent('#plan-heading')).includes('Free plan'), 'the Free plan is current');
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'billing-free.png'), fullPage: true });
    const to = await toStripe(/checkout\.stripe\.com\/c\/pay\/cs_test_/, 'button:has-text("Upgrade to Pro")');
    check(to.startsWith('https://checkout.stripe.com/'), 'Upgrade to Pro goes to Stripe Checkout', to);
  } else {
    check((await page.textContent('#plan-heading')).includes('Pro plan'), 'the Pro plan is current');
    check(await page.isVisible('button:has-text("Manage billing")'), 'Manage billing is offered');
    const invoices = await page.textContent('#invoices-heading + .table-wrap');
    check(invoices.includes('HB-0001') && invoices.includes('View invoice'), 'the paid invoice is listed with its link');
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'billing-pro.png'), fullPage: true });
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
    const mobile = await phone.newPage();
    await mobile.goto(url('/login'));
    await mobile.fill('input[name=email]', EMAIL);
    await mobile.fill('input[name=password]', PASSWORD);
    await Promise.all([mobile.waitForURL(/\/app/), mobile.click('button[type=submit]')]);
    await mobile.goto(url('/app/billing'));
    const overflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, 'the billing page fits a phone screen', `${overflow}px wider`);
    await mobile.screenshot({ path: join(SCREENSHOT_DIR, 'billing-phone.png'), fullPage: true });
    const to = await toStripe(/billing\.stripe\.com\/p\/session\//, 'button:has-text("Manage billing")');
    check(to.startsWith('https://billing.stripe.com/'), 'Manage billing opens the Customer Portal', to);
  }
  check(cspViolations.length === 0, 'no Content Security Policy violations', cspViolations.join(' | '));
} catch (e) {
  check(false, 'the billing flow ran to the end', e.message);
} finally {
  await browser.close();
}
finish();
