import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";

/**
 * Browser tests drive Debian's Chromium (`apt-get install chromium`, done by
 * scripts/prepare.sh) through playwright-core, which never downloads a
 * browser of its own.
 *
 * This is the binary itself, not the /usr/bin/chromium launcher script: that
 * script exports Google API keys (/etc/chromium.d/apikeys), turns on remote
 * extensions, which drops its own --disable-background-networking, and its
 * /dev/shm check breaks when /dev/shm is mounted twice, as it is here.
 */
export const CHROMIUM = "/usr/lib/chromium/chromium";

/** Where tests keep screenshots for a person to look at (ignored by git). */
export const SCREENSHOTS = join(new URL("../../", import.meta.url).pathname, "test-results", "screenshots");

/**
 * Flags on top of the ones playwright-core always passes. Those already
 * include --headless (the new headless mode: Chromium 132+ has no other),
 * --no-sandbox (chromiumSandbox: false below), --disable-dev-shm-usage,
 * --no-first-run, --disable-background-networking, --disable-component-update,
 * --disable-sync, --disable-default-apps, --metrics-recording-only,
 * --disable-breakpad and --disable-extensions. Even so, Chromium 156 still
 * looks up accounts.google.com and update.googleapis.com on its own, so the
 * host resolver below sends every name but loopback to a closed loopback port.
 * Never add --disable-features or --enable-features here: Chromium keeps only
 * the last one, which would undo playwright-core's list.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  // The browser may only talk to loopback: every other host name and IP
  // address resolves to 127.0.0.1:1, where nothing listens, so reaching out
  // fails as ERR_CONNECTION_REFUSED before any packet leaves the machine.
  // Not "MAP * ~NOTFOUND": a page whose navigation fails with a DNS error
  // makes Chromium probe google.com through 8.8.8.8 (its DNS probe service
  // ignores these rules).
  "--host-resolver-rules=MAP * 127.0.0.1:1, EXCLUDE 127.0.0.1, EXCLUDE localhost, EXCLUDE ::1",
  // No proxy, whatever the environment or system settings say.
  "--no-proxy-server",
  // Background traffic that playwright-core's defaults leave on.
  "--disable-domain-reliability",
  "--disable-client-side-phishing-detection",
  "--no-pings",
  "--disable-crash-reporter",
];

/** The only variables the browser sees: no *_proxy, no GOOGLE_API_KEY, no DISPLAY. */
function browserEnv(): Record<string, string> {
  const env: Record<string, string> = { LANG: "C.UTF-8" };
  for (const name of ["PATH", "HOME", "TMPDIR", "TZ"]) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/**
 * Starts headless Chromium, loopback only (see CHROMIUM_ARGS). As root in a
 * container it needs no sandbox, which playwright-core leaves off by default.
 *
 * The caller closes it in its afterAll, which vitest runs even when a test or
 * beforeAll failed:
 *
 *   let browser: Browser | undefined;
 *   beforeAll(async () => { browser = await launchBrowser(); });
 *   afterAll(async () => { await browser?.close(); });
 *
 * A launch that fails leaves no process behind (playwright-core kills what it
 * started), and playwright-core kills its browsers when the test worker exits.
 */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: run sh scripts/prepare.sh (it installs Debian's chromium)`);
  try {
    return await chromium.launch({
      executablePath: CHROMIUM,
      chromiumSandbox: false,
      headless: true,
      args: [...CHROMIUM_ARGS],
      env: browserEnv(),
      timeout: 30_000,
    });
  } catch (error) {
    throw new Error(`Chromium (${CHROMIUM}) did not start: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/** Saves a full-page screenshot as test-results/screenshots/<name>.png and returns its path. */
export async function saveScreenshot(page: Page, name: string): Promise<string> {
  if (!/^[\w.-]+$/.test(name)) throw new Error(`screenshot name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' only`);
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
