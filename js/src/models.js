// Where the package's own model lives: doze-stories (a 935k-parameter LLaMA
// trained by Doze on TinyStories, 3.6 MB, F32), its gate file and the
// measured cost of each budget ship in the package's models/ folder. URLs
// relative to this module, so they resolve in Node (file: URLs, which
// loadModel reads as files) and in a browser that serves the package as is.

/** The default model's URL: pass it to loadModel. */
export function defaultModelUrl() {
  return new URL('../models/doze-stories.gguf', import.meta.url);
}

/** Its gate file (fine-tuned at b = 0.7): fetch the bytes and pass them to model.loadGates. */
export function defaultGatesUrl() {
  return new URL('../models/doze-stories.gates.gguf', import.meta.url);
}

/** Perplexity on held-out text and achieved compute at b = 1.0 ... 0.1 with those gates (JSON). */
export function defaultBudgetCostsUrl() {
  return new URL('../models/doze-stories.gates.ppl.json', import.meta.url);
}
