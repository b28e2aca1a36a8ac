// Types of doze-lm/chat (js/src/chat.js): chat templates rendered with @huggingface/jinja.
import type { GenerateOptions, GenerateResult, Model, Token } from './index.js';
import type { Model as WorkerModel } from './worker.js';

export interface ChatMessage {
  /** 'system', 'user', 'assistant' (or any role the template knows). */
  role: string;
  content: string;
}

export interface RenderChatOptions {
  /** Open the assistant's turn at the end (default false). */
  addGenerationPrompt?: boolean;
  /** The template's bos_token / eos_token text (default ''). */
  bosToken?: string;
  eosToken?: string;
  /** Any other template variable, e.g. enable_thinking: false (Qwen3). */
  [variable: string]: unknown;
}

export interface ChatOptions extends GenerateOptions {
  /** A Jinja chat template instead of the model's tokenizer.chat_template. */
  template?: string;
  /** Default true. */
  addGenerationPrompt?: boolean;
  /** Extra template variables, e.g. { enable_thinking: false }. */
  templateContext?: Record<string, unknown>;
}

/** The texts that end an assistant turn in the common template families. */
export const END_OF_TURN: readonly string[];
/** Renders a chat template as llama.cpp and transformers do. BAD_FORMAT when the template does not parse or fails. */
export function renderChat(template: string, messages: readonly ChatMessage[], options?: RenderChatOptions): string;
/** The END_OF_TURN texts a template writes. */
export function endOfTurnStrings(template: string): string[];
/** The prompt chat() feeds (no leading BOS text: the tokenizer adds BOS), its stops, and the messages' contents in it (tokenize's `literal`: control tokens a user wrote stay text). */
export function chatPrompt(
  model: Model,
  messages: readonly ChatMessage[],
  options?: Pick<ChatOptions, 'template' | 'addGenerationPrompt' | 'templateContext'>,
): { prompt: string; template: string; stop: Array<string | number>; literal: Array<[number, number]> };
/** model.chat(messages, options) as a function. MISSING when the model has no template and none is given. */
export function chat(model: Model | WorkerModel, messages: readonly ChatMessage[], options?: ChatOptions): AsyncGenerator<Token, GenerateResult, void>;
