// Types for doze-lm (ESM). The worker entry's types are in worker.d.ts.

/** Stable error codes: the C library's status names plus the JS side's. */
export type DozeErrorCode =
  | 'INVALID_ARGUMENT' | 'BAD_MAGIC' | 'UNSUPPORTED_VERSION' | 'TRUNCATED' | 'BAD_FORMAT'
  | 'UNSUPPORTED_TYPE' | 'BAD_SHAPE' | 'MISSING' | 'OUT_OF_MEMORY' | 'IO' | 'TOKEN_RANGE'
  | 'BAD_UTF8' | 'CONTEXT_FULL' | 'ABORTED' | 'STATE'
  | 'NO_WASM_SIMD' | 'NO_WASM_FILE' | 'WASM_IMPORTS' | 'WORKER';

/** Every error Doze throws on purpose. Aborts: name 'AbortError', code 'ABORTED'. */
export class DozeError extends Error {
  constructor(code: DozeErrorCode | string, message: string, options?: { cause?: unknown });
  readonly code: DozeErrorCode | string;
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
}

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  /** Aborts the load at any point: rejects with an AbortError (code ABORTED) and frees what it took. */
  signal?: AbortSignal;
  /** Positions per session (KV cache length); default the model's own, capped by it. */
  contextLength?: number;
  /** Refuse (OUT_OF_MEMORY) a model needing more than this many bytes. */
  maxMemory?: number;
  /** Size hint for a stream without a known length (progress only). */
  totalBytes?: number;
  /** A custom location of doze.wasm, its bytes, or a precompiled WebAssembly.Module. */
  wasm?: WasmSource;
}

export type WeightType = 'f32' | 'f16' | 'q8_0' | string;

export interface ModelInfo {
  architecture: string;
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
}

export interface GenerateOptions {
  /** Tokens to generate at most (default: until the context is full). */
  maxTokens?: number;
  /** 0 = greedy (argmax); default 1. */
  temperature?: number;
  /** Keep the k most probable tokens (0 = off, the default). */
  topK?: number;
  /** Nucleus sampling mass in (0, 1] (1 = off, the default). */
  topP?: number;
  /** Sampler seed (xorshift64*, as the CLI's --seed); default random. */
  seed?: number | bigint;
  /** Stop strings (cut from the output) and/or token ids (not output). */
  stop?: string | number | Array<string | number>;
  /** Aborts the generation: the iterator throws an AbortError (code ABORTED). */
  signal?: AbortSignal;
  /** Prepend BOS to the prompt (default: when the context is empty). */
  bos?: boolean;
  /** Do not stop when EOS or BOS is sampled (the CLI's --no-stop). */
  ignoreEos?: boolean;
}

export interface CompleteOptions extends GenerateOptions {
  /** Called for each streamed token. */
  onToken?: (token: Token) => void;
}

export interface Token {
  /** Token id; -1 for a last item carrying only text held back at the end. */
  id: number;
  /** Its text; pieces concatenate to valid UTF-8 (a character split over tokens comes whole with the last one). */
  text: string;
  /** Its position in the context (-1 for the held-back item). */
  position: number;
}

export interface GenerateResult {
  /** 'eos': EOS or BOS sampled; 'stop': a stop string or id; 'length': maxTokens; 'context': the context is full. */
  reason: 'eos' | 'stop' | 'length' | 'context';
  tokens: number;
  text: string;
}

export interface Perplexity {
  perplexity: number;
  /** Mean negative log-likelihood (nats). */
  nll: number;
  /** Tokens scored (all after BOS). */
  tokens: number;
}

/** An independent KV cache over a model; each generate() continues the conversation. */
export class Session {
  private constructor();
  readonly model: Model;
  /** Tokens in the KV cache. */
  readonly position: number;
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<Token, GenerateResult, void>;
  complete(prompt: string, options?: CompleteOptions): Promise<string>;
  /** Resets the session, then scores `text`. */
  perplexity(text: string, options?: { signal?: AbortSignal }): Promise<Perplexity>;
  reset(): void;
  dispose(): void;
}

export class Model {
  private constructor();
  readonly info: ModelInfo;
  readonly disposed: boolean;
  /** Token ids, BOS first unless { bos: false }. */
  tokenize(text: string, options?: { bos?: boolean }): Int32Array;
  detokenize(ids: ArrayLike<number>): string;
  /** Streams a continuation of `prompt` from an empty context. */
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<Token, GenerateResult, void>;
  complete(prompt: string, options?: CompleteOptions): Promise<string>;
  perplexity(text: string, options?: { signal?: AbortSignal }): Promise<Perplexity>;
  createSession(): Session;
  /** Frees the model and its sessions. */
  dispose(): void;
}

export function loadModel(source: ModelSource, options?: LoadOptions): Promise<Model>;
export default loadModel;

/** True when the engine supports WebAssembly SIMD128 (doze.wasm needs it). */
export function hasWasmSimd(): boolean;

/** Bytes malloc'd in the (shared) wasm memory of a runtime: for leak checks. */
export function heapUsed(options?: { wasm?: WasmSource }): Promise<number>;

export interface Runtime {
  heapUsed(): number;
  memoryBytes(): number;
  version(): string;
}
/** The shared doze.wasm instance for a `wasm` option (created on first use). */
export function getRuntime(options?: { wasm?: WasmSource }): Promise<Runtime>;
