#!/usr/bin/env node
// Drives Debian's chromium (playwright-core, never a downloaded browser)
// against a running hub's dashboard; run by tests/browser/dashboard_test.cc,
// which starts the hub, nats-server and agents and kills one when told.
//
//   node dashboard_check.js <hub url> <token> <screenshot.png> <agents> <victim> <breach type> <dead within ms>
//                           [<literal host>]
//
//   <agents>      comma-separated agent ids the table must list, all live at first
//   <victim>      the agent the driver kills once this script prints "STEP listed"
//   <breach type> the type whose freshness breach must show for the victim
//   <literal host> a host name made of HTML markup that one agent registers
//                 with: the table must show it as text ("" or absent: no check)
//
// Steps, each printed as "STEP <name>" when passed (the driver waits on them):
//   listed    the token was asked and taken; every agent is listed, live
//   dead      the victim's row says dead within <dead within ms> of "listed"
//   breach    the victim's <breach type> cell shows a freshness breach
//   filtered  the hub-side filters work from the page: "needs attention
//             only" lists the victim alone, the search box finds one agent
//   screenshot  written to <screenshot.png>
// Any console error or uncaught page error fails the run. Exit 0 when every
// step passed, 1 otherwise (with the reason on stderr), 2 on bad arguments.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const USAGE = 'usage: node dashboard_check.js <hub url> <token> <screenshot.png> <agents> <victim> <breach type> ' +
              '<dead within ms> [<literal host>]';

function parseArgs(argv) {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    process.exit(0);
  }
  if (argv.length !== 7 && argv.length !== 8) {
    console.error(USAGE);
    process.exit(2);
  }
  const [url, token, screenshot, agents, victim, breachType, deadWithin, literalHost = ''] = argv;
  const deadWithinMs = Number.parseInt(deadWithin, 10);
  const agentList = agents.split(',').filter((a) => a);
  if (!Number.isFinite(deadWithinMs) || deadWithinMs <= 0 || !agentList.includes(victim)) {
    console.error(USAGE + '\n<dead within ms> must be positive and <victim> one of <agents>');
    process.exit(2);
  }
  return { url, token, screenshot, agents: agentList, victim, breachType, deadWithinMs, literalHost };
}

function step(name, detail) {
  console.log('STEP ' + name + (detail ? ' ' + detail : ''));
}

const row = (agent) => `tr[data-agent="${agent}"]`;

// Waits for `selector` on the page; on a timeout the error says what was expected.
async function expectShown(page, selector, timeoutMs, what) {
  try {
    await page.locator(selector).first().waitFor({ timeout: timeoutMs });
  } catch (e) {
    throw new Error(`${what}: not shown within ${timeoutMs} ms (${selector}); table now: ` +
                    JSON.stringify(await page.locator('#fleet tbody').innerText().catch(() => '?')));
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltasync-chromium-'));
  const problems = [];
  let context = null;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      // The machine's network is closed: without these chromium keeps
      // reaching out (and logging refused connections).
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 720 },
    });
    const page = context.pages()[0] ?? await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));

    await page.goto(args.url + '/?refresh=1');
    // The token is asked once, then kept for the tab.
    await page.locator('#token').fill(args.token);
    await page.locator('#login button[type=submit]').click();
    for (const agent of args.agents) {
      await expectShown(page, row(agent) + '[data-state="live"]', 30000, agent + ' listed live');
    }
    if (args.literalHost) {
      // Shown as text: the cell's text is the markup, and no element came of it.
      const hosts = await page.locator('#fleet tbody td:nth-child(2)').allTextContents();
      if (!hosts.includes(args.literalHost)) throw new Error('host not shown as text: ' + JSON.stringify(hosts));
      if (await page.locator('#fleet img').count() !== 0) throw new Error('a host name became an <img> element');
      if (await page.title() === 'owned') throw new Error('a host name ran script');
    }
    step('listed');
    const listedAt = Date.now();

    await expectShown(page, row(args.victim) + '[data-state="dead"]', args.deadWithinMs,
                      args.victim + ' turning dead (the liveness rule)');
    step('dead', 'after ' + (Date.now() - listedAt) + ' ms');
    // Killed, not retired: the others stay live.
    for (const agent of args.agents.filter((a) => a !== args.victim)) {
      if (await page.locator(row(agent)).getAttribute('data-state') === 'dead') {
        throw new Error(agent + ' shows dead too');
      }
    }

    const cell = `${row(args.victim)} td[data-type="${args.breachType}"]`;
    await expectShown(page, cell + '[data-breach="true"]', 30000, args.victim + "'s freshness breach of " + args.breachType);
    const text = await page.locator(cell).innerText();
    if (!text.includes('BREACH')) throw new Error('breach cell does not say BREACH: ' + text);
    step('breach', JSON.stringify(text));

    // Reloading keeps the token (sessionStorage): no second prompt.
    await page.reload();
    await page.locator(row(args.victim)).waitFor({ timeout: 10000 });
    if (await page.locator('#login').isVisible()) throw new Error('the token was asked again after a reload');

    // The hub filters: only the victim needs attention; the search finds one agent.
    await page.locator('#problems').check();
    await page.waitForFunction((victim) => {
      const rows = [...document.querySelectorAll('#fleet tbody tr[data-agent]')];
      return rows.length === 1 && rows[0].dataset.agent === victim;
    }, args.victim, { timeout: 10000 });
    await page.locator('#problems').uncheck();
    const other = args.agents.find((a) => a !== args.victim);
    await page.locator('#q').fill(other);
    await page.waitForFunction((agent) => {
      const rows = [...document.querySelectorAll('#fleet tbody tr[data-agent]')];
      return rows.length >= 1 && rows.every((r) => r.dataset.agent.includes(agent));
    }, other, { timeout: 10000 });
    await page.locator('#q').fill('');
    await page.waitForFunction((n) => document.querySelectorAll('#fleet tbody tr[data-agent]').length === n,
                               args.agents.length, { timeout: 10000 });
    step('filtered');

    await page.screenshot({ path: args.screenshot, fullPage: true });
    step('screenshot', args.screenshot);
  } catch (e) {
    problems.push(e.message);
  } finally {
    if (context) await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  if (problems.length) {
    for (const p of problems) console.error('FAIL ' + p);
    process.exit(1);
  }
  console.log('PASS');
}

main().catch((e) => {
  console.error('FAIL ' + e.stack);
  process.exit(1);
});
