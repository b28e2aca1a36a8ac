// Types for doze-lm/worker, derived from the main types (index.d.ts): the
// same classes and members, with the model in a Web Worker (or a Node
// worker_threads Worker).
//   - methods return Promises (generate: the same async iterator);
//   - getters are synchronous and cached: every reply and streamed item from
//     the worker carries the current values, so they are exact after any
//     awaited call (during a stream they follow the worker, which may be a
//     few tokens ahead of the item in hand);
//   - setters check the value at once (INVALID_ARGUMENT is thrown here) and
//     apply in the worker from its next step;
//   - Model, Session and Gates stand for their proxies, and are what the
//     methods take and return (a main-thread object is refused).
import type {
  FinetuneOptions, Gates, LoadOptions, Model, ModelSource, Session,
} from './index.js';

export {
  DozeError, DozeErrorCode, hasRelaxedSimd, hasWasmSimd, LoadOptions, LoadProgress, ModelInfo, ModelSource, GenerateOptions,
  CompleteOptions, GenerateResult, Token, Perplexity, PerplexityOptions, StepMask, StepResult, PromptStep, ForcedMask,
  AutoBudgetOptions, CalibrateOptions, FinetuneOptions, FinetuneStep, WeightType, WasmSource, SimdChoice,
  CacheOption, ModelCacheInfo, CachedModel, listCachedModels, deleteCachedModel,
  SpeculativeOptions, SpeculativeStep, SpeculativeSummary, JointFinetuneStep, JointFinetuneOptions, JointFinetuneResult,
} from './index.js';
export { ChatMessage, ChatOptions } from './chat.js';

/** A main-thread type as the worker entry has it: objects become their proxies. */
type Remote<T> = T extends Model ? WorkerModel : T extends Session ? WorkerSession : T extends Gates ? WorkerGates : T;

/** Fine-tuning options with `init` a proxy. */
export type WorkerFinetuneOptions = Omit<FinetuneOptions, 'init'> & { init?: WorkerGates | null };

/** An argument as the proxy takes it: options with an `init` gate take its proxy, the rest as they are. */
type RemoteArg<A> = A extends undefined ? A
  : A extends { init?: unknown } ? Omit<A, 'init'> & { init?: WorkerGates | null }
  : Remote<A>;
type RemoteArgs<A extends unknown[]> = { [I in keyof A]: RemoteArg<A[I]> };

/** A method as the proxy has it. */
type RemoteMethod<F> = F extends (...args: infer A) => infer R
  ? R extends AsyncGenerator<infer Y, infer Ret, infer N>
    ? (...args: RemoteArgs<A>) => AsyncGenerator<Y, Ret, N>
    : (...args: RemoteArgs<A>) => Promise<Remote<Awaited<R>>>
  : never;

/** The members of a main-thread class as its proxy has them. */
type RemoteMembers<T> = {
  [K in keyof T]: T[K] extends (...args: never[]) => unknown ? RemoteMethod<T[K]> : Remote<T[K]>;
};

/** The worker's model: the members of Model. dispose() also ends the worker. */
export interface WorkerModel extends RemoteMembers<Model> {}
/** A session in the worker: the members of Session. */
export interface WorkerSession extends Omit<RemoteMembers<Session>, 'budget'> {
  get budget(): number;
  /** null: follow the model's budget again. */
  set budget(b: number | null);
}
/** Gates held by the worker: the members of Gates. */
export interface WorkerGates extends RemoteMembers<Gates> {}

type ProxyClass<T> = abstract new (...args: never[]) => T;
export declare const WorkerModel: ProxyClass<WorkerModel>;
export declare const WorkerSession: ProxyClass<WorkerSession>;
export declare const WorkerGates: ProxyClass<WorkerGates>;
export { WorkerModel as Model, WorkerSession as Session, WorkerGates as Gates };

export interface WorkerLoadOptions extends Omit<LoadOptions, 'wasm'> {
  /** Move (not copy) an ArrayBuffer source into the worker. */
  transfer?: boolean;
  /** Another URL of worker-thread.js (default: next to worker.js). */
  workerUrl?: string | URL;
  /** Must be postMessage-able: a URL (string or URL), the bytes, or a WebAssembly.Module. */
  wasm?: string | URL | ArrayBuffer | ArrayBufferView | WebAssembly.Module;
}

export function loadModel(source: ModelSource, options?: WorkerLoadOptions): Promise<WorkerModel>;
export default loadModel;
