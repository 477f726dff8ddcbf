//! The one place that calls `fetch` for the dashboard: adds the credential, turns the gateway's
//! OpenAI-shaped errors into `ApiError`, and ends the session when the token is refused.

import { getToken, signOut } from "./session";

/** `{"error":{"message","type","code","param"}}` as the gateway sends it. */
export interface ErrorBody {
  message: string;
  type?: string;
  code?: string | null;
  param?: string | null;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string | null;
  readonly param: string | null;

  constructor(status: number, body: ErrorBody) {
    super(body.message);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code ?? null;
    this.param = body.param ?? null;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** The error object of a reply body, or a generic one naming the status. */
export function errorBodyOf(status: number, payload: unknown): ErrorBody {
  if (isRecord(payload) && isRecord(payload.error) && typeof payload.error.message === "string") {
    const { message, type, code, param } = payload.error;
    return {
      message,
      type: typeof type === "string" ? type : undefined,
      code: typeof code === "string" ? code : null,
      param: typeof param === "string" ? param : null,
    };
  }
  return { message: `HTTP ${status}`, code: null, param: null };
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PATCH" | "DELETE";
  body?: unknown;
  /** A credential other than the signed-in token (a pasted API key). */
  credential?: string | null;
  signal?: AbortSignal;
}

export async function apiRequest<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const credential = options.credential ?? getToken();
  const headers: Record<string, string> = { Accept: "application/json" };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method: options.method ?? "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, { message: "The gateway could not be reached.", code: "network_error" });
  }
  const text = await response.text();
  let payload: unknown = null;
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, errorBodyOf(response.status, payload));
    // A refused dashboard token (expired, or the secret rotated) sends the user to sign in.
    if (response.status === 401 && !options.credential && credential) signOut("expired");
    throw error;
  }
  return payload as T;
}
