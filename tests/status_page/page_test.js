// Headless Chromium (Debian's) against berthd's status page through a TCP relay of its socket:
// a berth created with berthctl appears within 2 s without a reload, its release removes it, the
// page marks itself stale when the stream drops. Saves a screenshot as a test artifact.
// Usage: node page_test.js URL BERTHCTL SOCKET SCREENSHOT STOP_CMD
"use strict";
const { chromium } = require("playwright-core");
const { execFileSync, execSync } = require("child_process");

const [url, berthctl, socket, screenshot, stopCmd] = process.argv.slice(2);
let failures = 0;
const ok = (what) => console.log("ok: " + what);
const fail = (what) => { console.log("FAIL: " + what); failures++; };
const ctl = (...args) => execFileSync(berthctl, ["--socket", socket, ...args], { encoding: "utf8" });

async function within(page, ms, fn, arg) {
  try { await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 }); return true; } catch (e) { console.log("  (" + String(e).split("\n")[0] + ")"); return false; }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    // The page forbids eval (its CSP); the test's own probes need it.
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    let navigations = 0;
    page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations++; });
    await page.goto(url);
    (await within(page, 5000, () => document.querySelectorAll("#gpus tbody tr").length === 8))
      ? ok("the page lists the node's 8 GPUs") : fail("GPUs not listed");
    (await within(page, 5000, () => document.querySelectorAll("#numa tbody tr").length === 2))
      ? ok("and its 2 NUMA nodes") : fail("NUMA nodes not listed");
    const before = navigations;

    let t0 = Date.now();
    ctl("create", "manual/page", "--gpus", "2", "--vfs", "1");
    const appeared = await within(page, 2000, () => !!document.querySelector('#berths tr[data-owner="manual/page"]'));
    appeared ? ok(`a berth created with berthctl appears in ${Date.now() - t0} ms`) : fail("the new berth did not appear within 2 s");
    // The page reads the inventory and the berths in two requests: a refresh already in flight
    // when the berth was made can show its row before its GPUs as held; the berth's own event
    // brings the refresh that shows both.
    const holdersShown = () => [...document.querySelectorAll("#gpus tbody tr")].filter((r) => r.textContent.includes("manual/page")).length;
    (await within(page, 2000, () => [...document.querySelectorAll("#gpus tbody tr")].filter((r) => r.textContent.includes("manual/page")).length === 2))
      ? ok("its two GPUs show it as holder")
      : fail(`GPUs held by manual/page on the page: ${await page.evaluate(holdersShown)}`);
    const events = await page.evaluate(() => document.querySelector("#events").textContent);
    events.includes("manual/page") ? ok("the event list shows it") : fail("no event for it in the list");
    await page.screenshot({ path: screenshot, fullPage: true });
    ok("screenshot saved to " + screenshot);

    t0 = Date.now();
    ctl("release", "manual/page");
    (await within(page, 2000, () => !document.querySelector('#berths tr[data-owner="manual/page"]')))
      ? ok(`its release removes it in ${Date.now() - t0} ms`) : fail("the released berth is still shown after 2 s");
    navigations === before ? ok("no reload happened") : fail(`the page navigated ${navigations - before} times`);

    execSync(stopCmd);
    (await within(page, 5000, () => document.body.classList.contains("stale")))
      ? ok("the page marks itself stale when the stream drops") : fail("not marked stale after the stream dropped");
    errors.length === 0 ? ok("no script errors") : fail("script errors: " + errors.join("; "));
  } catch (e) {
    fail(String(e));
  } finally {
    await browser.close();
  }
  console.log(`status_page_test: ${failures} failures`);
  process.exit(failures ? 1 : 0);
})();
