// Types of doze-lm/wasm (js/src/wasm.js): the low-level loader of the
// WebAssembly module, which the package and the `doze` CLI run on. Most
// programs want doze-lm's loadModel instead.
import type { WasmSource } from './index.js';

/** True where the engine validates WebAssembly SIMD (simd128), which Doze needs. */
export function hasWasmSimd(): boolean;
/** True where the engine validates relaxed SIMD (doze-relaxed.wasm can run). */
export function hasRelaxedSimd(): boolean;

/** Thrown by the module's exit (proc_exit); callMain returns its code. */
export class DozeExit extends Error {
  constructor(code: number);
  readonly code: number;
}

/** The host functions the module's file and console I/O go through (Node: the file system). */
export interface DozeHost {
  /** A handle >= 3, or -1 (or a negative reason: -2 ENOENT, -3 EACCES, -4 EISDIR, ...) on failure. */
  open(path: string, mode: 'r' | 'w'): number;
  /** Bytes read, 0 at the end, or a negative reason. Handle 0 is stdin. */
  read(handle: number, view: Uint8Array): number;
  /** Throws on failure. Handles 1 and 2 are stdout and stderr. */
  write(handle: number, bytes: Uint8Array): void;
  size(handle: number): number;
  /** -1 (or a throw) when the file could not be closed. */
  close(handle: number): number | void;
  /** -1 (or a throw) when the file could not be deleted; only regular files are. */
  remove(path: string): number | void;
  now(): number;
  stdout(bytes: Uint8Array): void;
  stderr(bytes: Uint8Array): void;
  flush(): void;
}

export interface InstantiateOptions {
  /** Where the module is (default: dist/doze.wasm, or its relaxed / threaded twin, next to the package). */
  wasm?: WasmSource;
  /** Overrides of the host functions, merged over the default. */
  host?: Partial<DozeHost>;
  /** 'auto' (default: relaxed where the engine has it), 'relaxed' or 'strict'. */
  simd?: 'auto' | 'relaxed' | 'strict';
  /** The shared-memory build (doze-mt.wasm) that thread pools run on. */
  threaded?: boolean;
}

/** An instantiated module: its exports (the C API of src/doze.h and wasm/exports.c) and memory helpers. */
export interface DozeRuntime {
  readonly module: WebAssembly.Module;
  readonly instance: WebAssembly.Instance;
  readonly exports: Record<string, any>;
  readonly memory: WebAssembly.Memory;
  /** 'relaxed' or 'strict': the build that runs. */
  readonly simd: 'relaxed' | 'strict';
  /** True for the shared-memory build. */
  readonly threaded: boolean;
  /** Fresh views over the current buffer (take them again after anything that may grow memory). */
  readonly HEAPU8: Uint8Array;
  readonly view: DataView;
  readonly host: DozeHost;
  malloc(n: number): number;
  free(ptr: number): void;
  /** Copies bytes into wasm memory: the pointer (free it). */
  writeBytes(bytes: ArrayBufferView | ArrayBuffer): number;
  /** A NUL-terminated UTF-8 copy of s: the pointer (free it). */
  writeString(s: string): number;
  readBytes(ptr: number, n: number): Uint8Array;
  /** UTF-8 at ptr: len bytes, or up to the first NUL. */
  readString(ptr: number, len?: number): string;
  /** Runs the CLI (`doze ARGS...`) in this module: its exit code. */
  callMain(args?: readonly string[], options?: { programName?: string }): number;
}

/** Compiles and instantiates the module. NO_WASM_SIMD where the engine lacks SIMD. */
export function instantiateDoze(options?: InstantiateOptions): Promise<DozeRuntime>;
export default instantiateDoze;
