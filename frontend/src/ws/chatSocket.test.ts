import { describe, expect, it, vi } from "vitest";
import { ChatSocket, type SocketLike, type StreamHandlers } from "./chatSocket";
import { tokensPerSecond } from "./useChat";

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: unknown[] = [];
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  receive(message: object) {
    this.onmessage?.(new MessageEvent("message", { data: JSON.stringify(message) }));
  }
  drop(code: number, reason: string) {
    this.readyState = 3;
    this.onclose?.({ code, reason } as CloseEvent);
  }
}

function setup() {
  const sockets: FakeSocket[] = [];
  const fetchTicketUrl = vi.fn(async (_credential: string | null) => "/v1/ws?ticket=wst_once");
  const chat = new ChatSocket("sk-gw-secret", {
    fetchTicketUrl,
    createSocket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      queueMicrotask(() => socket.open());
      return socket;
    },
  });
  const handlers = (): StreamHandlers & { log: string[] } => {
    const log: string[] = [];
    return {
      log,
      onDelta: (text) => log.push(`delta:${text}`),
      onDone: (usage) => log.push(`done:${usage?.total_tokens ?? "none"}`),
      onCancelled: () => log.push("cancelled"),
      onError: (status, error) => log.push(`error:${status}:${error.code ?? ""}`),
    };
  };
  return { chat, sockets, fetchTicketUrl, handlers };
}

describe("ChatSocket", () => {
  it("opens with a ticket, never the credential, in the URL", async () => {
    const { chat, sockets, fetchTicketUrl, handlers } = setup();
    await chat.start({ model: "echo", messages: [] }, handlers());
    expect(fetchTicketUrl).toHaveBeenCalledWith("sk-gw-secret");
    expect(sockets[0]?.url).toBe("/v1/ws?ticket=wst_once");
    expect(sockets[0]?.url).not.toContain("sk-gw");
  });

  it("streams deltas to the request they belong to, then done with usage", async () => {
    const { chat, sockets, handlers } = setup();
    const first = handlers();
    const second = handlers();
    const a = await chat.start({ model: "echo", messages: [{ role: "user", content: "a" }] }, first);
    const b = await chat.start({ model: "echo", messages: [{ role: "user", content: "b" }] }, second);
    expect(sockets).toHaveLength(1);
    expect(sockets[0]?.sent).toEqual([
      { type: "chat.request", id: a, body: { model: "echo", messages: [{ role: "user", content: "a" }] } },
      { type: "chat.request", id: b, body: { model: "echo", messages: [{ role: "user", content: "b" }] } },
    ]);
    const socket = sockets[0] as FakeSocket;
    socket.receive({ type: "chat.delta", id: b, chunk: { choices: [{ delta: { content: "B" } }] } });
    socket.receive({ type: "chat.delta", id: a, chunk: { choices: [{ delta: { content: "A" } }] } });
    socket.receive({ type: "chat.done", id: a, usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } });
    expect(first.log).toEqual(["delta:A", "done:3"]);
    expect(second.log).toEqual(["delta:B"]);
    expect(chat.running).toBe(1);
  });

  it("sends cancel for a running request and reports chat.cancelled", async () => {
    const { chat, sockets, handlers } = setup();
    const h = handlers();
    const id = await chat.start({ model: "echo", messages: [] }, h);
    chat.cancel(id);
    expect(sockets[0]?.sent.at(-1)).toEqual({ type: "cancel", id });
    sockets[0]?.receive({ type: "chat.cancelled", id });
    expect(h.log).toEqual(["cancelled"]);
    chat.cancel(id);
    expect(sockets[0]?.sent).toHaveLength(2);
  });

  it("tells running requests when the socket closes, and reconnects for the next", async () => {
    const { chat, sockets, handlers } = setup();
    const h = handlers();
    await chat.start({ model: "echo", messages: [] }, h);
    sockets[0]?.drop(1008, "policy");
    expect(h.log).toEqual(["error:0:socket_closed"]);
    await chat.start({ model: "echo", messages: [] }, handlers());
    expect(sockets).toHaveLength(2);
  });

  it("passes the gateway's errors on with their status", async () => {
    const { chat, sockets, handlers } = setup();
    const h = handlers();
    const id = await chat.start({ model: "nope", messages: [] }, h);
    sockets[0]?.receive({ type: "error", id, status: 404, error: { message: "no such model", code: "model_not_found" } });
    expect(h.log).toEqual(["error:404:model_not_found"]);
  });

  it("fails start when the ticket is refused", async () => {
    const chat = new ChatSocket("sk-gw-bad", {
      fetchTicketUrl: () => Promise.reject(new Error("Incorrect API key")),
      createSocket: () => {
        throw new Error("must not open");
      },
    });
    await expect(chat.start({ model: "echo", messages: [] }, setup().handlers())).rejects.toThrow("Incorrect API key");
  });
});

describe("tokensPerSecond", () => {
  it("divides tokens by the time after the first token", () => {
    expect(tokensPerSecond(20, 1000, 3000)).toBe(10);
    expect(tokensPerSecond(20, null, 3000)).toBeNull();
    expect(tokensPerSecond(0, 1000, 3000)).toBeNull();
    expect(tokensPerSecond(5, 1000, 1000)).toBeNull();
  });
});
