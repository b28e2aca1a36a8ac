// doze-lm/models: the package's own model, shipped in its models/ folder.

/** URL of doze-stories.gguf (935k-parameter LLaMA trained on TinyStories, 3.6 MB); pass it to loadModel. */
export declare function defaultModelUrl(): URL;
/** URL of its gate file (fine-tuned at budget 0.7): fetch it and pass the bytes to model.loadGates. */
export declare function defaultGatesUrl(): URL;
/** URL of a JSON file: { points: { budget, compute, ppl }[] } measured on held-out text with those gates. */
export declare function defaultBudgetCostsUrl(): URL;
