// The compute budget of a model or session: a fixed value, or the autoBudget
// controller that moves it to hold a token time.

import { budget as budgetCheck, checkOptions, invalid, num } from './options.js';

/** Steps at or above this budget run dense (as the C session decides). */
export const DENSE_BUDGET = 0.9995;

function clamp(x, lo, hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

/** Throws INVALID_ARGUMENT unless b is a number in (0, 1]. */
export function checkBudget(b, what = 'budget') {
  return budgetCheck(b, what);
}

const AUTO_OPTIONS = {
  targetMsPerToken: num(0, Infinity, { loOpen: true }),
  min: budgetCheck,
  max: budgetCheck,
  start: budgetCheck,
  gain: num(0, 2, { loOpen: true }),
  smoothing: num(0, 1, { loOpen: true }),
};

/**
 * The controller behind autoBudget(): after each generated token, the
 * token's measured time t (its forward step + sampling) moves the budget b:
 *   e <- exponential average (weight `smoothing`) of t / target - 1, each
 *        sample clamped to [-0.8, 1.5] (one stall moves b only so far)
 *   b <- clamp(b * exp(-gain * e), min, max)
 * an integral controller, so b settles where the mean token time equals the
 * target (or at min / max when the target is out of reach).
 */
export class AutoBudget {
  constructor(options) {
    if (options == null || typeof options !== 'object') {
      throw invalid('autoBudget: pass { targetMsPerToken, min?, max? } or null');
    }
    const o = checkOptions('autoBudget', options, AUTO_OPTIONS);
    const { targetMsPerToken, min = 0.2, max = 1, gain = 0.3, smoothing = 0.3 } = o;
    if (targetMsPerToken === undefined) throw invalid('autoBudget: targetMsPerToken must be a positive number, got undefined');
    if (min > max) throw invalid(`autoBudget: min ${min} is above max ${max}`);
    const first = o.start ?? max;
    this.options = Object.freeze({ targetMsPerToken, min, max, gain, smoothing });
    this.budget = clamp(first, min, max);
    this.error = 0;
    this.samples = 0;
  }
  /** One token took `ms`: returns the budget for the next one. */
  observe(ms) {
    if (!(ms > 0) || !Number.isFinite(ms)) return this.budget;
    const { targetMsPerToken, min, max, gain, smoothing } = this.options;
    const e = clamp(ms / targetMsPerToken - 1, -0.8, 1.5);
    this.error = this.samples++ === 0 ? e : this.error + smoothing * (e - this.error);
    this.budget = clamp(this.budget * Math.exp(-gain * this.error), min, max);
    return this.budget;
  }
}

/** What sets a budget: a fixed value, or an AutoBudget controller while one is on. */
export class BudgetState {
  constructor(budget = 1) {
    this.fixed = budget;
    this.auto = null;
  }
  get current() {
    return this.auto ? this.auto.budget : this.fixed;
  }
  set(b) {
    this.fixed = checkBudget(b);
    this.auto = null;
  }
  setAuto(options) {
    this.auto = options == null ? null : new AutoBudget(options);
  }
  get autoOptions() {
    return this.auto ? this.auto.options : null;
  }
}
