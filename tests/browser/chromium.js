// Shared by the browser tests: Debian's Chromium driven by playwright-core,
// the launch flags that suit this closed network, and why a test must skip.
import { existsSync } from 'node:fs';

export const CHROMIUM = process.env.DOZE_CHROMIUM || '/usr/bin/chromium';
export const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];

let pw = null;
try {
  pw = await import('playwright-core');
} catch {
  /* reported by skipReason */
}
export const playwright = pw;

/** false when Chromium and playwright-core are there; else why to skip. */
export const skipReason = !existsSync(CHROMIUM)
  ? `Chromium not found at ${CHROMIUM} (apt-get install chromium)`
  : !pw
    ? 'playwright-core is not installed (npm ci)'
    : false;
