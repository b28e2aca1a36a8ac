// Shared by the browser tests: Debian's Chromium driven by playwright-core,
// and the launch flags that suit this closed network.
//
// A missing browser or playwright-core FAILS the browser tests (importing
// this module throws with the reason): a suite that passes by skipping its
// browser half proves nothing. DOZE_ALLOW_NO_BROWSER=1 turns that into
// skips, for a machine that knowingly has no browser; skipReason then says why.
import { existsSync } from 'node:fs';

export const CHROMIUM = process.env.DOZE_CHROMIUM || '/usr/bin/chromium';
export const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];

let pw = null;
try {
  pw = await import('playwright-core');
} catch {
  /* reported below */
}
export const playwright = pw;

const missing = !existsSync(CHROMIUM)
  ? `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set DOZE_CHROMIUM)`
  : !pw
    ? 'playwright-core is not installed (npm run setup)'
    : false;

if (missing && process.env.DOZE_ALLOW_NO_BROWSER !== '1') {
  throw new Error(`browser tests cannot run: ${missing}. Set DOZE_ALLOW_NO_BROWSER=1 to skip them instead.`);
}

/** false when Chromium and playwright-core are there; else why to skip (only with DOZE_ALLOW_NO_BROWSER=1). */
export const skipReason = missing;
