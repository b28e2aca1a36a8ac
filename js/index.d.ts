// Types for doze-lm (ESM): the one source of the package's types (the
// JavaScript in src/ carries no type annotations of its own). The worker
// entry's types (worker.d.ts) are derived from these.
//
// Options: every option is checked for type and range, and an option name
// the call does not know is refused; both throw (or reject with) a DozeError
// with code INVALID_ARGUMENT naming the call and the option.

/** Stable error codes: the C library's status names plus the JS side's. */
export type DozeErrorCode =
  | 'INVALID_ARGUMENT' | 'BAD_MAGIC' | 'UNSUPPORTED_VERSION' | 'TRUNCATED' | 'BAD_FORMAT'
  | 'UNSUPPORTED_TYPE' | 'BAD_SHAPE' | 'MISSING' | 'OUT_OF_MEMORY' | 'IO' | 'TOKEN_RANGE'
  | 'BAD_UTF8' | 'CONTEXT_FULL' | 'ABORTED' | 'STATE'
  | 'NO_WASM_SIMD' | 'NO_RELAXED_SIMD' | 'NO_WASM_FILE' | 'WASM_IMPORTS' | 'WORKER';

/** Every error Doze throws on purpose. Aborts: name 'AbortError', code 'ABORTED'. */
export class DozeError extends Error {
  constructor(code: DozeErrorCode, message: string, options?: { cause?: unknown });
  /** One of DozeErrorCode: `switch (e.code)` is checked against the list. */
  readonly code: DozeErrorCode;
  /** 'AbortError' for code ABORTED, else 'DozeError'. */
  name: string;
}

/** Where doze.wasm comes from (default: ../dist/doze.wasm next to the package's src/). */
export type WasmSource = string | URL | ArrayBuffer | ArrayBufferView | WebAssembly.Module;

/** Anything loadModel can read a GGUF file from. */
export type ModelSource =
  | string // URL (fetched) or, in Node, a file path
  | URL
  | ArrayBuffer
  | ArrayBufferView
  | Blob
  | Response
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>;

export interface LoadProgress {
  /** Bytes fed to the loader so far (grows monotonically). */
  loaded: number;
  /** Bytes expected: Content-Length / file size / byteLength, else from the GGUF header once parsed; 0 while unknown. */
  total: number;
  /** 'download' while bytes arrive; one final 'done' with loaded === total. */
  phase: 'download' | 'done';
  /** Only with the `cache` option: true when the bytes come from the browser cache, false when from the network. */
  fromCache?: boolean;
}

/** The `cache` option of loadModel: true, or the SHA-256 (64 hex digits) the model file must have. */
export type CacheOption = boolean | { sha256?: string };

/** What loadModel did with the cache (model.info.cache; only with the `cache` option). */
export interface ModelCacheInfo {
  /** The bytes came from the cache (no download). */
  fromCache: boolean;
  /** A download was stored in the cache by this load. */
  stored: boolean;
  /** Why a download was not stored (e.g. the storage quota). */
  error?: string;
}

/** A model kept in the browser cache. */
export interface CachedModel {
  url: string;
  bytes: number;
  /** The SHA-256 checked when it was stored (loaded with { cache: { sha256 } }), else null. */
  sha256: string | null;
  /** ISO 8601 time it was stored. */
  storedAt: string | null;
}

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  /** Aborts the load at any point: rejects with an AbortError (code ABORTED) and frees what it took. */
  signal?: AbortSignal;
  /** Positions per session (KV cache length): an integer in [1, the model's own]; default the model's own. */
  contextLength?: number;
  /** Refuse (OUT_OF_MEMORY) a model needing more than this many bytes. */
  maxMemory?: number;
  /** Size hint for a stream without a known length (progress only). */
  totalBytes?: number;
  /** A custom location of doze.wasm, its bytes, or a precompiled WebAssembly.Module. */
  wasm?: WasmSource;
  /**
   * Threads for the forward pass, an integer in [1, 64]; default the cores
   * (navigator.hardwareConcurrency / os.availableParallelism()), at most 8.
   * More than 1 loads doze-mt.wasm (or doze-mt-relaxed.wasm, by `simd`) and starts one worker per
   * extra thread; results are bit-identical for any count. Without SharedArrayBuffer (a
   * page that is not cross-origin isolated) it falls back to 1 thread with
   * one console warning (see info.threads).
   */
  threads?: number;
  /**
   * Intermediate channels per FFN block, the unit of FFN skipping: an integer in [16, 256], a multiple
   * of 16 and of the ffn_down tensors' quant block (32; 256 for the K-quants, where 256 is the only
   * choice); anything else is an INVALID_ARGUMENT error, as is any value on a mixture of experts.
   * Default: chosen for the model (see ModelInfo.ffnBlock). Finer blocks give the router more to
   * choose from; coarser ones make skipping faster in wall-clock time. Gate files are bound to the
   * size: load a model with the ffnBlock its gates were made with.
   */
  ffnBlock?: number;
  /**
   * Browser only (the Cache API; an http(s) URL source): use a cached copy of the model when its size
   * (and sha256, when given) checks, else download and store the completed download. Where there is no
   * Cache API (Node, insecure pages) a true value is an INVALID_ARGUMENT error. A download whose
   * SHA-256 differs from the given one rejects with code IO and is not stored.
   */
  cache?: CacheOption;
  /**
   * Which build: 'auto' (default) loads doze-relaxed.wasm (the quantized products on the relaxed-SIMD
   * int8 dot; the same results bit for bit) where hasRelaxedSimd(), else doze.wasm; 'relaxed' insists
   * (NO_RELAXED_SIMD error where the engine lacks it); 'strict' always loads doze.wasm.
   * With `wasm` given, that module is used as it is. model.info.simd says which one runs.
   * On more than 1 thread the same choice is made between doze-mt-relaxed.wasm and doze-mt.wasm.
   */
  simd?: SimdChoice;
}

export type SimdChoice = 'auto' | 'relaxed' | 'strict';

/** The type of layer 0's attn_q.weight (a mixed file such as Q4_K_M reports its q4_k). */
export type WeightType =
  | 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'iq4_nl' | 'iq4_xs'
  | 'q2_k' | 'q3_k' | 'q4_k' | 'q5_k' | 'q6_k'
  | (string & {});

export interface ModelInfo {
  architecture: string;
  /** Threads the model runs on (1 after a fallback). */
  threads: number;
  layers: number;
  heads: number;
  kvHeads: number;
  dim: number;
  hiddenDim: number;
  headDim: number;
  ropeDim: number;
  vocabSize: number;
  /** Positions per session, after the contextLength option. */
  contextLength: number;
  normEps: number;
  ropeTheta: number;
  /** Type of the attention / FFN matrices. */
  weightType: WeightType;
  tiedOutput: boolean;
  params: number;
  /** Bytes of all tensors as stored. */
  bytes: number;
  /** Bytes the layers read per token. */
  layerBytes: number;
  /** -1 where the model has none. */
  bosId: number;
  eosId: number;
  unkId: number;
  /** Intermediate channels per FFN block: 256 when an ffn_down is a K-quant; else 16 when the FFN weights are unquantized (f32/f16/bf16) and hiddenDim < 256; else 32, doubled (up to 256) while a block's ffn_gate rows are under 64 KB and 12 blocks per layer remain. */
  ffnBlock: number;
  /** FFN blocks per layer: ceil(hiddenDim / ffnBlock). */
  ffnBlocks: number;
  /** 0, or the doze.ffn_order key (a hash of the channel order) of a model whose FFN channels `doze order-ffn` grouped into blocks; gate files are bound to it. */
  ffnOrder: number;
  /** A mixture of experts: experts per layer (0 when dense). */
  experts: number;
  /** A mixture of experts: the model's top k, the experts each token uses at budget 1 (0 when dense). */
  expertsUsed: number;
  /** Only when loaded with the `cache` option: where the bytes came from. */
  cache?: ModelCacheInfo;
  /** The build running the model: 'relaxed' (doze-relaxed.wasm, or doze-mt-relaxed.wasm on more than 1 thread) or 'strict' (doze.wasm, or doze-mt.wasm). */
  simd: 'relaxed' | 'strict';
}

export interface GenerateOptions {
  /** Tokens to generate at most: an integer >= 0 or Infinity (the default: until the context is full). */
  maxTokens?: number;
  /** 0 = greedy (argmax); default 1. */
  temperature?: number;
  /** Keep the k most probable tokens (0 = off, the default). */
  topK?: number;
  /** Nucleus sampling mass in [0, 1] (1 = off, the default; 0 keeps the most likely token alone, as in llama.cpp). */
  topP?: number;
  /** Drop tokens whose probability is below minP times the top token's, in [0, 1] (0 = off, the default). */
  minP?: number;
  /** A token seen in the last repeatLastN tokens: logit / r if > 0, logit * r if <= 0; > 0 (1 = off, the default). */
  repeatPenalty?: number;
  /** Tokens of the context (the session's earlier tokens and the prompt included) the penalties look back over: default 64; 0 off; -1 the whole context. */
  repeatLastN?: number;
  /** Minus this per occurrence in the window (0 = off, the default). */
  frequencyPenalty?: number;
  /** Minus this once for a token present in the window (0 = off, the default). */
  presencePenalty?: number;
  /** Sampler seed (xorshift64*, as the CLI's --seed); default random. */
  seed?: number | bigint;
  /** Stop strings (cut from the output) and/or token ids (not output). */
  stop?: string | number | ReadonlyArray<string | number>;
  /** Aborts the generation: the iterator throws an AbortError (code ABORTED). */
  signal?: AbortSignal;
  /** Prepend BOS to the prompt (default: when the context is empty). */
  bos?: boolean;
  /** Control tokens written in the prompt (<|im_start|>, ...) are single tokens (default false: text). */
  parseSpecial?: boolean;
  /** With parseSpecial: [start, end) index ranges of the prompt where control tokens stay text (e.g. what a user typed). */
  literal?: ReadonlyArray<readonly [number, number]>;
  /** Do not stop when BOS or an end-of-generation token (EOS, <|eot_id|>, <|im_end|>, ...) is sampled (the CLI's --no-stop). */
  ignoreEos?: boolean;
  /** Called after each prompt token's forward step (its mask, compute, budget and time). */
  onPromptStep?: (step: PromptStep) => void;
  /**
   * A prompt that does not fit the free positions is an error (CONTEXT_FULL,
   * naming the prompt's tokens and the context); 'start' drops its first
   * tokens instead (a BOS stays), keeping room for min(maxTokens, half the
   * free positions) generated tokens.
   */
  truncate?: 'start';
  /** Use only the prompt's last N tokens (a BOS in front counts and stays). Not with truncate. */
  keepLast?: number;
  /**
   * Self-speculative decoding: the gates draft tokens at a low budget, the
   * whole model verifies them in one batched pass. The output is the dense
   * model's (greedy: the same tokens and logits; sampled: the dense
   * distribution), whatever the budget. `true`: k and the draft budget chosen
   * as the run goes; an object fixes what it gives. Needs gates (calibrated
   * on first use like a budget < 1). Not with onPromptStep.
   */
  speculative?: boolean | SpeculativeOptions;
}

export interface SpeculativeOptions {
  /** Tokens drafted per step, 1..8 (default: adaptive, 0..8). */
  k?: number;
  /** The draft's budget in (0, 1) (default: adaptive, 0.3..0.8). */
  draftBudget?: number;
  /** Adaptive choices from measured times (default true); false: a fixed cost model, so a seeded sampled run is reproducible. */
  timed?: boolean;
}

/** One speculative step: what it drafted and what the whole model kept. */
export interface SpeculativeStep {
  /** Tokens drafted (0: a plain dense step). */
  k: number;
  /** Of them accepted (the step emitted accepted + 1 tokens). */
  accepted: number;
  /** The draft's budget. */
  draftBudget: number;
  /** The draft steps' mean achieved compute ratio. */
  draftCompute: number;
  /** Running rate of drafted tokens accepted, over the generation so far. */
  acceptance: number;
  /** Milliseconds drafting, verifying, and the whole step. */
  draftMs: number;
  verifyMs: number;
  ms: number;
}

/** A speculative generation's totals (GenerateResult#speculation). */
export interface SpeculativeSummary {
  steps: number;
  drafted: number;
  accepted: number;
  /** accepted / drafted (0 when nothing was drafted). */
  acceptance: number;
  draftMs: number;
  verifyMs: number;
}

export interface CompleteOptions extends GenerateOptions {
  /** Called for each streamed token. */
  onToken?: (token: Token) => void;
}

/**
 * Which layers and heads a forward step ran. Flat row-major arrays:
 * `layers[l]` is 1 when layer l ran, `heads[l * heads + h]` is 1 when head h
 * of layer l ran (a skipped layer reports all its heads as 0).
 */
export interface StepMask {
  /** (layers) 1 = ran. */
  layers: Uint8Array;
  /** (layers * heads) row-major per layer; 1 = ran. */
  heads: Uint8Array;
  /** (layers * ffnBlocks) FFN blocks (ffnBlock intermediate channels each: see ModelInfo), row-major per layer; 1 = ran. */
  ffn: Uint8Array;
  /** A mixture of experts only (absent on a dense model and on speculative items): (layers * info.experts) row-major per layer; 1 = the expert ran (all 0 where the layer or its FFN dozed). */
  experts?: Uint8Array;
}

export interface Token {
  /**
   * Token id. -1 for a last item that carries text held back until the end
   * (the rest of a character split over tokens, or text that could have begun
   * a stop string); it comes with the mask, compute and budget of the step
   * that ended the generation.
   */
  id: number;
  /** Its text; pieces concatenate to valid UTF-8 (a character split over tokens comes whole with the last one). */
  text: string;
  /** Its position in the context (-1 for the last item carrying held-back text). */
  position: number;
  /** The mask of the forward step whose logits this token was sampled from (the step at position - 1). */
  mask: StepMask;
  /** That step's achieved compute ratio (fraction of the dense layer compute, 1 = dense). */
  compute: number;
  /** The budget that step ran under (what autoBudget chose, when it is on). */
  budget: number;
  /** Milliseconds that step plus the sampling took (what autoBudget measures; speculative: the step's time shared by its tokens). */
  ms: number;
  /** Speculative: the draft proposed this token (false otherwise). */
  drafted: boolean;
  /** Speculative: the draft proposed it and the whole model accepted it (false otherwise; a token the whole model chose itself is not drafted). */
  accepted: boolean;
  /** Speculative: the step that emitted this token (null otherwise, and on the held-back-text item). */
  speculation: SpeculativeStep | null;
}

export interface PromptStep {
  /** The prompt token run. */
  id: number;
  /** Its position. */
  position: number;
  mask: StepMask;
  compute: number;
  budget: number;
  ms: number;
}

/** A forced (or ordinary) single step's outcome: see Session#step. */
export interface StepResult {
  /** The position the token went to. */
  position: number;
  /** (vocabSize) logits, a copy. */
  logits: Float32Array;
  mask: StepMask;
  compute: number;
  /** The budget it ran under (steps without a forced mask only). */
  budget?: number;
  ms: number;
}

/** A forced mask for Session#step: 0/1 (or boolean) values. */
export interface ForcedMask {
  /** (layers) values; default all on when only `heads` is given. */
  layers?: ArrayLike<number | boolean>;
  /** (layers * heads) values row-major, or one (heads) array per layer; default every head of a running layer. */
  heads?: ArrayLike<number | boolean> | ArrayLike<number | boolean>[];
  /** (layers * info.ffnBlocks) FFN-block values row-major, or one array per layer; default every block of a running layer. */
  ffn?: ArrayLike<number | boolean> | ArrayLike<number | boolean>[];
  /** A mixture of experts only: (layers * info.experts) values row-major, or one array per layer: the experts that run where the layer's FFN runs, their router probabilities renormalized over them (any number, none included); default the model's own top k. */
  experts?: ArrayLike<number | boolean> | ArrayLike<number | boolean>[];
}

export interface AutoBudgetOptions {
  /** The token time to hold, in milliseconds (forward step + sampling, measured with performance.now()). */
  targetMsPerToken: number;
  /** Lowest budget it may choose (default 0.2). */
  min?: number;
  /** Highest budget it may choose (default 1). */
  max?: number;
  /** Budget of the first token (default max). */
  start?: number;
  /** Integral gain per token (default 0.3). */
  gain?: number;
  /** Weight of the newest sample in the averaged error (default 0.3). */
  smoothing?: number;
}

export interface CalibrateOptions {
  /** Calibration text: encoded with BOS, cut to 512 tokens (and the context), as `doze gates --calib FILE`. */
  text?: string;
  /** Calibration token ids, BOS first, used as given (capped by the context). */
  tokens?: ArrayLike<number>;
  /** The first N layers are never skipped whole (default 1). */
  protectLayers?: number;
  /** The first N positions run dense (default 1: BOS). */
  protectTokens?: number;
  /** Ridge regularization of the fit (default 0.01). */
  ridge?: number;
  /** Nonzero: random routers with this seed (the floor real gates must beat), still calibrated to the budget. */
  random?: number | bigint;
  /** Aborts while the self-generated calibration text is written. */
  signal?: AbortSignal;
  /** Make them the model's gates (default true). */
  activate?: boolean;
}

/** One step of Model#finetuneGates, as onStep receives it. */
export interface FinetuneStep {
  /** 1, 2, ..., steps. */
  step: number;
  /** The run's number of steps. */
  steps: number;
  /** kl + computeWeight * (expectedCompute - budget)^2. */
  loss: number;
  /** Mean KL(dense || gated) per token, nats. */
  kl: number;
  /** Achieved compute ratio under this step's hard decisions. */
  compute: number;
  /** Expected compute ratio under the relaxed (Gumbel-sigmoid) gates. */
  expectedCompute: number;
  /** The Gumbel-sigmoid temperature of the step (annealed tauStart -> tauEnd). */
  tau: number;
  /** batch * contextLength tokens over the step's time. */
  tokensPerSecond: number;
  /** Milliseconds the step took. */
  ms: number;
}

export interface FinetuneOptions {
  /** The compute budget b in (0, 1] to train for (default 0.7). */
  budget?: number;
  /** Training steps (default 400); also the length of the temperature schedule. */
  steps?: number;
  /** Tokens per training window T (default 128; at most the model's context). */
  contextLength?: number;
  /** Windows (stories) per step (default 8). */
  batch?: number;
  /** AdamW learning rate (default 2e-2). */
  lr?: number;
  /** AdamW weight decay (default 1e-4). */
  weightDecay?: number;
  /** Weight of (E[compute] - b)^2 in the loss (default 20). */
  computeWeight?: number;
  /** Gumbel-sigmoid temperature at the first step (default 1). */
  tauStart?: number;
  /** ... at the last step (default 0.2). */
  tauEnd?: number;
  /** The run's seed (story choice and noise; default 1): same seed, same gates. */
  seed?: number | bigint;
  /** Start from (a copy of) these gates; default null: training-free gates calibrated on the text's first 512 tokens. */
  init?: Gates | null;
  /** Called after each step. */
  onStep?: (step: FinetuneStep) => void;
  /** Aborts between steps: rejects with an AbortError (code ABORTED) and frees the run. */
  signal?: AbortSignal;
  /** Make the trained gates the model's (default true). */
  activate?: boolean;
}

/** One step of Model#finetune, as onProgress receives it. */
export interface JointFinetuneStep extends FinetuneStep {
  /** The task loss of the step: KL to the dense model (loss 'kl') or the text's cross-entropy (loss 'ce'), nats per token. */
  kl: number;
}

export interface JointFinetuneOptions extends Omit<FinetuneOptions, 'onStep' | 'activate'> {
  /** The bytes of this model's GGUF file (required): the new model is this file with the trained weights (f32) in place of its own. */
  source: ArrayBuffer | ArrayBufferView;
  /** Joint training of weights and gates (the default; false is finetuneGates()). */
  joint?: boolean;
  /** Rank of low-rank adapters W = W0 + B A on the projections, merged into the weights written (default: every weight learns). */
  lora?: number;
  /** 'kl' (default): distillation towards the dense model's next-token distribution; 'ce': the text's next tokens. */
  loss?: 'kl' | 'ce';
  /** Adam learning rate of the weights (or adapters) (default 5e-4). */
  weightLr?: number;
  /** The weights' gradient norm is clipped to this (default 1; 0: no clipping). */
  weightClip?: number;
  /** Each window draws its budget from [lo, hi] instead of one budget, so one model and gate file serve every budget. */
  budgetRange?: [number, number];
  /** With budgetRange: the share of windows run dense (default 0.2). */
  denseFraction?: number;
  /** The weights' rate decays along a cosine to this by the last step (default: constant weightLr). */
  weightLrMin?: number;
  /** Steps of linear warm-up of the weights' rate (default 0). */
  weightWarmup?: number;
  /** The decisions' logistic noise falls linearly from 1 to this by the last step (default 1: constant). */
  noiseEnd?: number;
  /** Every weight also decays towards the model's own weights at this rate (decoupled, like AdamW's decay; default 0: free to drift). Not with lora. */
  weightAnchor?: number;
  /** Write the exponential moving average of the weights over the steps (Polyak averaging) instead of the last step's weights, with this decay in [0, 1), e.g. 0.999 (default 0: none). Not with lora. */
  weightEma?: number;
  /** Called after each step. */
  onProgress?: (step: JointFinetuneStep) => void;
}

/** What Model#finetune returns: load them with loadModel(model) and model.loadGates(gates). */
export interface JointFinetuneResult {
  /** The fine-tuned model's GGUF file. */
  model: Uint8Array;
  /** Its gate file, retuned on the fine-tuned model. */
  gates: Uint8Array;
}

/**
 * Per-layer routers deciding, per token, which layers and heads run under a
 * budget. They belong to the model that made or loaded them and are freed
 * with it (or by dispose()).
 */
export class Gates {
  private constructor();
  readonly model: Model;
  /** 'training-free' (calibrated), 'trained', or 'random'. */
  readonly kind: string;
  readonly protectLayers: number;
  readonly protectTokens: number;
  readonly layers: number;
  readonly heads: number;
  readonly disposed: boolean;
  /** The gate file: a small GGUF that `doze generate --gates` and Model#loadGates read. */
  save(): Uint8Array;
  /** Frees them (the model drops them if they were active). */
  dispose(): void;
}

export interface GenerateResult {
  /** 'eos': BOS or an end-of-generation token sampled; 'stop': a stop string or id; 'length': maxTokens; 'context': the context is full. */
  reason: 'eos' | 'stop' | 'length' | 'context';
  tokens: number;
  text: string;
  /** Prompt tokens fed (BOS and a pending token included). */
  promptTokens: number;
  /**
   * Milliseconds spent on the prompt, up to the first sampled token. Without
   * onPromptStep the prompt runs as batched prefill (gated batches under a budget).
   */
  promptMs: number;
  /** Speculative generation: its totals (null otherwise). */
  speculation: SpeculativeSummary | null;
}

/**
 * Perplexity of a text from an empty context, cut to the context length.
 * Dense, the text runs in batched passes (the logits of single steps, bit
 * for bit); under a budget with gates, token by token, so the budget's
 * feedback follows every token as in generation.
 */
export interface Perplexity {
  perplexity: number;
  /** Mean negative log-likelihood (nats). */
  nll: number;
  /** Tokens scored (all after BOS). */
  tokens: number;
  /** Mean achieved compute ratio of the steps (1 = dense). */
  compute: number;
  /** The budget the steps ran under. */
  budget: number;
}

export interface PerplexityOptions {
  signal?: AbortSignal;
  /** Budget for this call (default: the model's / session's; autoBudget does not adjust it). */
  budget?: number;
}

/** An independent KV cache over a model; each generate() continues the conversation. */
export class Session {
  private constructor();
  readonly model: Model;
  /** True after dispose() (or the model's). */
  readonly disposed: boolean;
  /** Tokens in the KV cache. */
  readonly position: number;
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<Token, GenerateResult, void>;
  complete(prompt: string, options?: CompleteOptions): Promise<string>;
  /** Resets the session, then scores `text`. */
  perplexity(text: string, options?: PerplexityOptions): Promise<Perplexity>;
  /**
   * This session's budget in (0, 1]; follows the model's (and its autoBudget)
   * until set; `null` makes it follow again. Invalid values throw INVALID_ARGUMENT.
   */
  get budget(): number;
  set budget(b: number | null);
  /** A controller for this session alone (null: off, keeping a fixed budget of its own). */
  autoBudget(options: AutoBudgetOptions | null): void;
  /**
   * Runs one token at the next position: under a forced mask when `layers`,
   * `heads`, `ffn` or `experts` is given, else under the budget and gates like generate().
   */
  step(token: number, mask?: ForcedMask): Promise<StepResult>;
  reset(): void;
  /**
   * Rolls the KV cache back to its first `position` tokens (0 <= position <=
   * this.position; INVALID_ARGUMENT otherwise): continuing gives exactly what
   * a session that never ran the later tokens gives. Drops a token generate()
   * sampled but had not run.
   */
  truncate(position: number): void;
  dispose(): void;
}

export class Model {
  private constructor();
  readonly info: ModelInfo;
  readonly disposed: boolean;
  /** Token ids, BOS first unless { bos: false }. */
  /**
   * parseSpecial: control tokens written in the text (<|im_start|>, ...) are
   * single tokens, except inside the `literal` [start, end) index ranges
   * (String#slice indices), where they stay text.
   */
  tokenize(text: string, options?: { bos?: boolean; parseSpecial?: boolean; literal?: ReadonlyArray<readonly [number, number]> }): Int32Array;
  /**
   * The text of `ids` (control and unknown tokens give none). SentencePiece's
   * dummy leading space is dropped at the start and after BOS, so
   * detokenize(tokenize(text, { bos })) is `text` with or without BOS.
   */
  detokenize(ids: ArrayLike<number>): string;
  /** A string-valued GGUF metadata key ('general.name', 'tokenizer.chat_template', ...), or null. */
  metadata(key: string): string | null;
  /** A token's text as the vocabulary stores it, control tokens included ('<s>', '<|im_end|>'); null out of range. */
  tokenText(id: number): string | null;
  /**
   * Streams the assistant's reply to `messages` rendered with the model's chat
   * template (tokenizer.chat_template, via @huggingface/jinja), as from an
   * empty context, on the KV cache of the last chat where the conversation
   * extends it and no generate/complete/perplexity ran since (only the new
   * tokens run: result.promptTokens); stops at an
   * end-of-generation token and the template's end-of-turn text.
   */
  chat(messages: readonly import('./chat.js').ChatMessage[], options?: import('./chat.js').ChatOptions): AsyncGenerator<Token, GenerateResult, void>;
  /** Streams a continuation of `prompt` from an empty context. */
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<Token, GenerateResult, void>;
  complete(prompt: string, options?: CompleteOptions): Promise<string>;
  perplexity(text: string, options?: PerplexityOptions): Promise<Perplexity>;
  createSession(): Session;
  /**
   * Compute budget b in (0, 1] (1 = dense): the fraction of the dense
   * per-token layer compute the gates may spend. Settable any time, also
   * while generating (applies from the next token); setting it turns
   * autoBudget off. A budget < 1 with no gates calibrates training-free gates
   * on first use (self-generated text). Invalid values throw INVALID_ARGUMENT.
   */
  get budget(): number;
  set budget(b: number);
  /** Adjusts the budget between tokens to hold a token time; null turns it off (back to the fixed budget). */
  autoBudget(options: AutoBudgetOptions | null): void;
  /** The autoBudget settings in force (defaults filled in), or null. */
  readonly autoBudgetOptions: Required<Omit<AutoBudgetOptions, 'start'>> | null;
  /** The gates in use, or null; set null for dense steps whatever the budget. */
  get gates(): Gates | null;
  set gates(g: Gates | null);
  /** Training-free gates (the same file as `doze gates MODEL [--calib FILE]`); they become the model's unless activate: false. */
  calibrateGates(options?: CalibrateOptions): Promise<Gates>;
  /**
   * Trains gates on `text` (stories separated by "<|endoftext|>" lines) by
   * backprop, the base weights frozen, then retunes their budget table on the
   * text. The same run as `doze finetune MODEL TEXTFILE --budget B --steps N
   * --ctx T --batch B --seed S -o F`: saveGates() gives F's bytes. Yields to
   * the event loop between steps. The gates become the model's unless
   * activate: false. On a mixture of experts the FFN is one gated block and
   * the experts are frozen; the init gates' expert constants are kept.
   */
  finetuneGates(text: string, options?: FinetuneOptions): Promise<Gates>;
  /**
   * Fine-tunes the weights together with the gates on `text` (joint
   * training: every weight, or rank-`lora` adapters merged when written),
   * the same run as `doze finetune MODEL TEXTFILE --joint --model-out M -o G`.
   * This model is not changed (an aborted run leaves it as it was): the
   * result is the new model's file and its gate file, as bytes. A mixture of
   * experts is refused (UNSUPPORTED_TYPE; finetuneGates trains its gates).
   */
  finetune(text: string, options: JointFinetuneOptions): Promise<JointFinetuneResult>;
  /** Gates from a gate file; another model's file throws BAD_SHAPE / BAD_FORMAT (UNSUPPORTED_TYPE: not a gate file). */
  loadGates(bytes: ArrayBuffer | ArrayBufferView, options?: { activate?: boolean }): Gates;
  /** The gate file of the active gates (or of `gates`); STATE when there are none. */
  saveGates(gates?: Gates): Uint8Array;
  /** Bytes malloc'd in this model's wasm memory (shared by the models of one runtime): for leak checks. A Promise, as in the worker entry. */
  heapUsed(): Promise<number>;
  /** Frees the model, its sessions (and what unfinished generations hold) and its gates. */
  dispose(): void;
}

export function loadModel(source: ModelSource, options?: LoadOptions): Promise<Model>;
export default loadModel;

/** The models in the browser cache (loadModel's `cache` option). Rejects with INVALID_ARGUMENT without the Cache API. */
export function listCachedModels(): Promise<CachedModel[]>;
/** Deletes the cached copy of a model URL; resolves to true if there was one. */
export function deleteCachedModel(url: string | URL): Promise<boolean>;

/** True when the engine supports WebAssembly SIMD128 (doze.wasm needs it). */
export function hasWasmSimd(): boolean;

/** True when the engine has relaxed SIMD whose int8 dot product gives exact results (what simd: 'auto' picks doze-relaxed.wasm by). */
export function hasRelaxedSimd(): boolean;

/** Bytes malloc'd in the (shared) wasm memory of a runtime: for leak checks. */
export function heapUsed(options?: { wasm?: WasmSource; simd?: SimdChoice }): Promise<number>;

export interface Runtime {
  heapUsed(): number;
  memoryBytes(): number;
  version(): string;
}
/** The shared doze.wasm instance for a `wasm` option (created on first use). */
export function getRuntime(options?: { wasm?: WasmSource; simd?: SimdChoice }): Promise<Runtime>;
