// Types for doze-lm/worker: the model runs in a Web Worker (or a Node
// worker_threads Worker); the methods return promises.
import type {
  CompleteOptions, GenerateOptions, GenerateResult, LoadOptions, ModelInfo, ModelSource,
  Perplexity, Token,
} from './index.js';

export { DozeError, DozeErrorCode, hasWasmSimd, LoadOptions, LoadProgress, ModelInfo, ModelSource, GenerateOptions, GenerateResult, Token, Perplexity } from './index.js';

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
  perplexity(text: string, options?: { signal?: AbortSignal }): Promise<Perplexity>;
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
  perplexity(text: string, options?: { signal?: AbortSignal }): Promise<Perplexity>;
  createSession(): Promise<WorkerSession>;
  /** Bytes malloc'd in the worker's wasm memory. */
  heapUsed(): Promise<number>;
  /** Frees the model and terminates the worker. */
  dispose(): Promise<void>;
}

export function loadModel(source: ModelSource, options?: WorkerLoadOptions): Promise<WorkerModel>;
export default loadModel;
