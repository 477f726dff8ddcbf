//! The messages of `GET /v1/ws` (see the gateway's src/ws/protocol.rs), parsed without trust.

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface WsError {
  message: string;
  type?: string;
  code?: string | null;
}

export type ServerMessage =
  | { type: "chat.delta"; id: string; text: string; finishReason: string | null }
  | { type: "chat.done"; id: string; usage: Usage | null }
  | { type: "chat.cancelled"; id: string }
  | { type: "error"; id: string | null; status: number; error: WsError };

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatBody {
  model: string;
  messages: ChatMessage[];
  max_tokens?: number;
  temperature?: number;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function usageOf(value: unknown): Usage | null {
  if (!isRecord(value)) return null;
  const { prompt_tokens, completion_tokens, total_tokens } = value;
  if (typeof prompt_tokens !== "number" || typeof completion_tokens !== "number") return null;
  return {
    prompt_tokens,
    completion_tokens,
    total_tokens: typeof total_tokens === "number" ? total_tokens : prompt_tokens + completion_tokens,
  };
}

/** The text and finish reason of a chat.completion.chunk's first choice. */
function deltaOf(chunk: unknown): { text: string; finishReason: string | null } {
  if (!isRecord(chunk) || !Array.isArray(chunk.choices)) return { text: "", finishReason: null };
  const choice: unknown = chunk.choices[0];
  if (!isRecord(choice)) return { text: "", finishReason: null };
  const delta = choice.delta;
  const text = isRecord(delta) && typeof delta.content === "string" ? delta.content : "";
  const finishReason = typeof choice.finish_reason === "string" ? choice.finish_reason : null;
  return { text, finishReason };
}

/** A message from the gateway, or null for anything this client does not understand. */
export function parseServerMessage(data: string): ServerMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (!isRecord(value)) return null;
  const id = typeof value.id === "string" || typeof value.id === "number" ? String(value.id) : null;
  switch (value.type) {
    case "chat.delta":
      return id === null ? null : { type: "chat.delta", id, ...deltaOf(value.chunk) };
    case "chat.done":
      return id === null ? null : { type: "chat.done", id, usage: usageOf(value.usage) };
    case "chat.cancelled":
      return id === null ? null : { type: "chat.cancelled", id };
    case "error": {
      const error = isRecord(value.error) ? value.error : {};
      return {
        type: "error",
        id,
        status: typeof value.status === "number" ? value.status : 0,
        error: {
          message: typeof error.message === "string" ? error.message : "Unknown error",
          type: typeof error.type === "string" ? error.type : undefined,
          code: typeof error.code === "string" ? error.code : null,
        },
      };
    }
    default:
      return null;
  }
}

export function chatRequest(id: string, body: ChatBody): string {
  return JSON.stringify({ type: "chat.request", id, body });
}

export function cancelRequest(id: string): string {
  return JSON.stringify({ type: "cancel", id });
}
