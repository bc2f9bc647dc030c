// The whole journey through the app's web build in the system Chromium, at
// a phone-sized viewport, against a real `luna serve` (demo mode):
// sign up with an invite code, pick a model, stream a reply through a
// network drop, stop a reply, Markdown from untrusted text, the drawer,
// images to completion and full size, a 402 shown, sign out, and a revoked
// session (401) sent back to sign-in. Screenshots go to
// $LUNA_SCREENSHOTS (default test-output/screenshots).
//
//   node test/web/journey.js DIST_DIR
//
// Needs LUNA_TEST_CHROMIUM (the test script sets it); never downloads a
// browser.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const { spawnLuna, invite } = require('../luna-process');
const { serveWeb } = require('./serve');

const dist = path.resolve(process.argv[2] ?? 'dist-web');
const shots = path.resolve(process.env.LUNA_SCREENSHOTS ?? 'test-output/screenshots');
const executablePath = process.env.LUNA_TEST_CHROMIUM;

function log(msg) {
  process.stderr.write(`journey: ${msg}\n`);
}

async function main() {
  if (!executablePath) throw new Error('LUNA_TEST_CHROMIUM is not set (the system Chromium)');
  if (!fs.existsSync(path.join(dist, 'index.html'))) throw new Error(`no web build in ${dist}`);
  fs.rmSync(shots, { recursive: true, force: true });
  fs.mkdirSync(shots, { recursive: true });

  const luna = await spawnLuna();
  process.env.LUNA_TEST_DATA_DIR = luna.dataDir;
  process.env.LUNA_TEST_BIN = luna.bin;
  const web = await serveWeb(dist, luna.url);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  let step = 0;
  let page;
  // Screens under the top one stay mounted: act on what is on screen.
  const visible = (locator) => locator.filter({ visible: true });
  const composer = () => visible(page.getByLabel('Message'));
  const shot = async (name) => {
    const file = path.join(shots, `${String(++step).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file });
    log(`screenshot ${path.basename(file)}`);
  };
  try {
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      userAgent:
        'Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1',
    });
    page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    page.on('dialog', (d) => {
      pageErrors.push('unexpected dialog: ' + d.message());
      void d.dismiss();
    });
    page.setDefaultTimeout(30_000);

    // Sign in screen, then sign up with an invite code.
    await page.goto(web.url + '/');
    await page.getByText('Welcome back.').waitFor();
    await shot('sign-in');
    await page.getByRole('link', { name: 'Create an account' }).click();
    await page.getByText('Create your account').waitFor();
    const email = `journey-${Date.now()}@example.com`;
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password (8 characters or more)').fill('a long password');
    await page.getByLabel('Invite code').fill('WRONG-CODE');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('alert').filter({ hasText: /invite/i }).waitFor();
    await shot('sign-up-bad-invite');
    await page.getByLabel('Invite code').fill(invite(1000));
    await page.getByRole('button', { name: 'Create account' }).click();

    // New chat: the model picker with prices, the live balance.
    await page.getByText('Pick a model.').waitFor();
    await page.getByTestId('balance').filter({ hasText: '1,000 credits' }).waitFor();
    await page.getByText(/credits? \/ 1K tokens/).first().waitFor();
    await shot('new-chat-model-picker');

    // Send; the reply streams; the network drops mid-reply and comes back.
    await composer().fill('Hello Luna, tell me about the moon');
    await visible(page.getByTestId('send')).click();
    // The list is inverted: the newest message comes first in the DOM.
    const reply = page.getByTestId('assistant-text').first();
    await reply.waitFor();
    await shot('reply-streaming');
    await context.setOffline(true);
    await page.waitForTimeout(600);
    await context.setOffline(false);
    await visible(page.getByTestId('stop')).waitFor({ state: 'detached', timeout: 60_000 });
    await page.getByText(/\d+ credits? · \d+ tokens/).first().waitFor();
    const shown = (await reply.innerText()).replace(/\s+/g, ' ').trim();
    assert.match(shown, /You said: “Hello Luna, tell me about the moon”/);
    assert.match(shown, /luna serve --models-file models\.toml/); // the last words arrived
    await page.getByTestId('balance').filter({ hasNotText: '1,000 credits' }).waitFor();
    await shot('reply-complete');

    // Markdown from untrusted text: only http(s)/mailto links, no raw HTML.
    // (The demo model quotes the first 80 characters of the message.)
    await composer().fill('[x](javascript:alert(1)) <img src=x onerror=alert(1)> [ok](https://e.co/)');
    await visible(page.getByTestId('send')).click();
    await visible(page.getByTestId('stop')).waitFor({ state: 'detached', timeout: 60_000 });
    const last = page.getByTestId('assistant-text').first();
    await last.getByText('ok', { exact: true }).waitFor();
    assert.equal(await page.locator('a[href^="javascript"]').count(), 0, 'a javascript: link was rendered');
    assert.equal(await page.locator('img[src="x"]').count(), 0, 'raw HTML was rendered');
    assert.equal(await last.locator('a[href="https://e.co/"]').count(), 1, 'the https link is missing');
    assert.match(await last.innerText(), /<img src=x onerror=alert\(1\)>/);
    await shot('markdown-safe');

    // Stop a reply while it is written.
    await composer().fill('Please write something I can stop');
    await visible(page.getByTestId('send')).click();
    await visible(page.getByTestId('stop')).waitFor();
    await page.getByTestId('assistant-text').first().waitFor();
    await visible(page.getByTestId('stop')).click();
    await page.getByText('Stopped.').waitFor();
    await shot('reply-stopped');

    // The drawer lists the conversation (titled live).
    await page.getByRole('button', { name: /navigation menu/i }).click();
    const drawer = page.getByTestId('drawer');
    await drawer.getByRole('button', { name: /^Conversation / }).first().waitFor();
    await drawer.getByText(/credits available/).waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid="drawer"]')?.getBoundingClientRect().left >= 0);
    await page.waitForTimeout(300); // the slide settles
    await shot('drawer');

    // Images: price on the button, live status, gallery, full size.
    await drawer.getByRole('button', { name: 'Images' }).click();
    await page.getByRole('button', { name: 'Generate · 50 credits' }).waitFor();
    await page.getByLabel('Image prompt').fill('a lighthouse on a cliff at dusk');
    await page.getByTestId('size-512').click();
    await page.getByRole('button', { name: 'Generate · 50 credits' }).click();
    await page.getByRole('button', { name: /^(Queued…|Generating…): a lighthouse/ }).waitFor();
    await shot('image-generating');
    await page.getByTestId('image-completed').waitFor({ timeout: 90_000 });
    await page.waitForFunction(() => [...document.querySelectorAll('img')].some((i) => i.complete && i.naturalWidth > 0));
    await shot('image-gallery');
    await page.getByTestId('image-completed').click();
    await page.getByTestId('full-image').waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll('img')].some((i) => i.complete && i.naturalWidth >= 512));
    await shot('image-full-size');
    await page.getByRole('button', { name: 'Back to gallery' }).click();

    // Sign out; a new user without credits sees a readable 402.
    await page.getByRole('button', { name: /navigation menu/i }).click();
    await page.getByTestId('drawer').getByRole('button', { name: 'Sign out' }).click();
    await page.getByText('Welcome back.').waitFor();
    await page.getByRole('link', { name: 'Create an account' }).click();
    // Wait for the sign-up screen: filling "Email" while the sign-in screen
    // is still up types into the screen that is leaving.
    await page.getByText('Create your account').waitFor();
    await page.getByLabel('Password (8 characters or more)').waitFor();
    const brokeEmail = `broke-${Date.now()}@example.com`;
    await page.getByLabel('Email').fill(brokeEmail);
    await page.getByLabel('Password (8 characters or more)').fill('a long password');
    await page.getByLabel('Invite code').fill(invite(0));
    const createAccount = page.getByRole('button', { name: 'Create account' });
    for (let attempt = 1; !(await createAccount.isEnabled()); attempt++) {
      if (attempt > 5) throw new Error('the sign-up form never took the email');
      await page.getByLabel('Email').fill(brokeEmail);
      await page.waitForTimeout(200);
    }
    await createAccount.click();
    await page.getByText('Pick a model.').waitFor();
    await page.getByTestId('balance').filter({ hasText: '0 credits' }).waitFor();
    await composer().fill('Can I chat for free?');
    await visible(page.getByTestId('send')).click();
    await page.getByRole('alert').filter({ hasText: 'Not enough credits.' }).waitFor();
    await shot('error-402');

    // The session is revoked elsewhere: the next call answers 401 and the
    // app returns to sign-in with a readable notice.
    const token = await page.evaluate(() => localStorage.getItem('luna.session'));
    const out = await fetch(luna.url + '/v1/auth/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + token } });
    assert.equal(out.status, 204);
    await composer().fill('Still there?');
    await visible(page.getByTestId('send')).click();
    await page.getByTestId('notice').filter({ hasText: 'Your session has ended. Please sign in again.' }).waitFor();
    await shot('error-401-signed-out');

    assert.deepEqual(pageErrors, [], 'errors in the page');
    log(`passed; screenshots in ${shots}`);
  } catch (err) {
    if (page) {
      log('failed at ' + page.url());
      if (process.env.JOURNEY_DEBUG) log(await page.getByTestId('assistant-text').first().innerHTML().catch(() => ''));
      await shot('failure').catch(() => {});
    }
    throw err;
  } finally {
    await browser.close();
    await web.close();
    await luna.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
