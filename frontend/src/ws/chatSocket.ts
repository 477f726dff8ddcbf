//! One WebSocket to `/v1/ws` for the playground. Authenticates with a single-use ticket from
//! `POST /v1/ws/ticket` (the credential goes in a header; only the ticket, dead after its first
//! use, is ever in a URL), multiplexes requests by id, and reports a closing socket to every
//! request still running.

import { apiRequest } from "../api/client";
import { cancelRequest, chatRequest, parseServerMessage, type ChatBody, type Usage, type WsError } from "./protocol";

export interface StreamHandlers {
  onDelta: (text: string) => void;
  onDone: (usage: Usage | null) => void;
  onCancelled: () => void;
  /** `status` is the HTTP status the REST API would give; 0 when the socket itself failed. */
  onError: (status: number, error: WsError) => void;
}

export interface SocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
}

export interface ChatSocketDeps {
  /** Exchanges the credential for a ticket URL such as `/v1/ws?ticket=…`. */
  fetchTicketUrl: (credential: string | null) => Promise<string>;
  createSocket: (url: string) => SocketLike;
}

const OPEN = 1;

export const browserDeps: ChatSocketDeps = {
  fetchTicketUrl: async (credential) => (await apiRequest<{ url: string }>("/v1/ws/ticket", { method: "POST", credential })).url,
  createSocket: (path) => {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return new WebSocket(`${scheme}//${window.location.host}${path}`);
  },
};

export class ChatSocket {
  private socket: SocketLike | null = null;
  private opening: Promise<SocketLike> | null = null;
  private readonly streams = new Map<string, StreamHandlers>();
  private nextId = 1;

  constructor(
    private readonly credential: string | null,
    private readonly deps: ChatSocketDeps = browserDeps,
  ) {}

  /** Starts a streamed chat; returns its id (for `cancel`). */
  async start(body: ChatBody, handlers: StreamHandlers): Promise<string> {
    const socket = await this.connect();
    const id = `r${this.nextId++}`;
    this.streams.set(id, handlers);
    socket.send(chatRequest(id, body));
    return id;
  }

  cancel(id: string): void {
    if (this.socket?.readyState === OPEN && this.streams.has(id)) this.socket.send(cancelRequest(id));
  }

  close(): void {
    this.socket?.close(1000, "closed by the page");
    this.socket = null;
  }

  get running(): number {
    return this.streams.size;
  }

  private connect(): Promise<SocketLike> {
    if (this.socket?.readyState === OPEN) return Promise.resolve(this.socket);
    if (!this.opening) {
      this.opening = this.open().finally(() => {
        this.opening = null;
      });
    }
    return this.opening;
  }

  private async open(): Promise<SocketLike> {
    const url = await this.deps.fetchTicketUrl(this.credential);
    const socket = this.deps.createSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error("The WebSocket could not be opened."));
      socket.onclose = (event) => reject(new Error(`The WebSocket closed before opening (code ${event.code}).`));
    });
    socket.onmessage = (event) => this.dispatch(typeof event.data === "string" ? event.data : "");
    socket.onerror = null;
    socket.onclose = (event) => this.closed(socket, event.code, event.reason);
    this.socket = socket;
    return socket;
  }

  private dispatch(data: string): void {
    const message = parseServerMessage(data);
    if (!message) return;
    const handlers = message.id === null ? undefined : this.streams.get(message.id);
    if (message.type === "error" && message.id === null) {
      // Not tied to a request (the gateway could not read one): every running stream hears it.
      this.streams.forEach((h) => h.onError(message.status, message.error));
      return;
    }
    if (!handlers || message.id === null) return;
    switch (message.type) {
      case "chat.delta":
        handlers.onDelta(message.text);
        return;
      case "chat.done":
        this.streams.delete(message.id);
        handlers.onDone(message.usage);
        return;
      case "chat.cancelled":
        this.streams.delete(message.id);
        handlers.onCancelled();
        return;
      case "error":
        this.streams.delete(message.id);
        handlers.onError(message.status, message.error);
        return;
    }
  }

  private closed(socket: SocketLike, code: number, reason: string): void {
    if (this.socket === socket) this.socket = null;
    const error: WsError = {
      message: reason ? `The connection closed (${code}: ${reason}).` : `The connection closed (${code}).`,
      code: "socket_closed",
    };
    const streams = [...this.streams.values()];
    this.streams.clear();
    streams.forEach((handlers) => handlers.onError(0, error));
  }
}
