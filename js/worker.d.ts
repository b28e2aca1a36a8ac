// Types for doze-lm/worker: the model runs in a Web Worker (or a Node
// worker_threads Worker); the methods return promises.
import type {
  AutoBudgetOptions, CalibrateOptions, CompleteOptions, FinetuneOptions, ForcedMask, GenerateOptions, GenerateResult,
  LoadOptions, ModelInfo, ModelSource, Perplexity, PerplexityOptions, StepResult, Token,
} from './index.js';

export {
  DozeError, DozeErrorCode, hasWasmSimd, LoadOptions, LoadProgress, ModelInfo, ModelSource, GenerateOptions,
  GenerateResult, Token, Perplexity, PerplexityOptions, StepMask, StepResult, PromptStep, ForcedMask,
  AutoBudgetOptions, CalibrateOptions, FinetuneOptions, FinetuneStep,
} from './index.js';

/** Gates held by the worker (see Gates in doze-lm). */
export class WorkerGates {
  private constructor();
  readonly model: WorkerModel;
  readonly kind: string;
  readonly protectLayers: number;
  readonly protectTokens: number;
  readonly layers: number;
  readonly heads: number;
  /** The gate file. */
  save(): Promise<Uint8Array>;
  dispose(): Promise<void>;
}

export interface WorkerLoadOptions extends LoadOptions {
  /** Move (not copy) an ArrayBuffer source into the worker. */
  transfer?: boolean;
  /** Another URL of worker-thread.js (default: next to worker.js). */
  workerUrl?: string | URL;
  /** Must be postMessage-able: a URL string or a WebAssembly.Module. */
  wasm?: string | URL | WebAssembly.Module;
}

export class WorkerSession {
  private constructor();
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<Token, GenerateResult, void>;
  complete(prompt: string, options?: CompleteOptions): Promise<string>;
  perplexity(text: string, options?: PerplexityOptions): Promise<Perplexity>;
  /** As last set here or reported by its tokens (the model's while it follows the model); setting is sent to the worker. */
  get budget(): number;
  set budget(b: number | null);
  /** Asks the worker. */
  getBudget(): Promise<number>;
  autoBudget(options: AutoBudgetOptions | null): Promise<void>;
  step(token: number, mask?: ForcedMask): Promise<StepResult>;
  position(): Promise<number>;
  reset(): Promise<void>;
  dispose(): Promise<void>;
}

export class WorkerModel {
  private constructor();
  readonly info: ModelInfo;
  tokenize(text: string, options?: { bos?: boolean }): Promise<Int32Array>;
  detokenize(ids: ArrayLike<number>): Promise<string>;
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<Token, GenerateResult, void>;
  complete(prompt: string, options?: CompleteOptions): Promise<string>;
  perplexity(text: string, options?: PerplexityOptions): Promise<Perplexity>;
  createSession(): Promise<WorkerSession>;
  /**
   * As last set here or reported by the last token of model.generate;
   * setting it validates here (INVALID_ARGUMENT) and applies from the next
   * token the worker computes.
   */
  get budget(): number;
  set budget(b: number);
  /** Asks the worker (e.g. what autoBudget chose). */
  getBudget(): Promise<number>;
  autoBudget(options: AutoBudgetOptions | null): Promise<void>;
  /** The gates as known here (getGates() asks the worker, e.g. after an automatic calibration); setting sends them. */
  get gates(): WorkerGates | null;
  set gates(g: WorkerGates | null);
  setGates(g: WorkerGates | null): Promise<WorkerGates | null>;
  getGates(): Promise<WorkerGates | null>;
  calibrateGates(options?: CalibrateOptions): Promise<WorkerGates>;
  /**
   * Model#finetuneGates in the worker: onStep events are streamed back, an
   * abort of `signal` is forwarded (the worker stops at the next step
   * boundary and frees the run); `init` is a WorkerGates of this model.
   */
  finetuneGates(text: string, options?: Omit<FinetuneOptions, 'init'> & { init?: WorkerGates | null }): Promise<WorkerGates>;
  loadGates(bytes: ArrayBuffer | ArrayBufferView, options?: { activate?: boolean }): Promise<WorkerGates>;
  saveGates(gates?: WorkerGates): Promise<Uint8Array>;
  /** Bytes malloc'd in the worker's wasm memory. */
  heapUsed(): Promise<number>;
  /** Frees the model and terminates the worker. */
  dispose(): Promise<void>;
}

export function loadModel(source: ModelSource, options?: WorkerLoadOptions): Promise<WorkerModel>;
export default loadModel;
