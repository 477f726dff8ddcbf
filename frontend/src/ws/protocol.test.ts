import { describe, expect, it } from "vitest";
import { cancelRequest, chatRequest, parseServerMessage } from "./protocol";

describe("WebSocket protocol", () => {
  it("reads deltas, done, cancelled and errors as the gateway sends them", () => {
    expect(
      parseServerMessage('{"type":"chat.delta","id":"r1","chunk":{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}}'),
    ).toEqual({ type: "chat.delta", id: "r1", text: "Hi", finishReason: null });
    expect(
      parseServerMessage('{"type":"chat.done","id":"r1","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'),
    ).toEqual({
      type: "chat.done",
      id: "r1",
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
    });
    expect(parseServerMessage('{"type":"chat.done","id":2,"usage":null}')).toEqual({ type: "chat.done", id: "2", usage: null });
    expect(parseServerMessage('{"type":"chat.cancelled","id":"r1"}')).toEqual({ type: "chat.cancelled", id: "r1" });
    expect(
      parseServerMessage(
        '{"type":"error","id":null,"status":400,"error":{"message":"bad","type":"invalid_request_error","code":"invalid_json"}}',
      ),
    ).toEqual({
      type: "error",
      id: null,
      status: 400,
      error: { message: "bad", type: "invalid_request_error", code: "invalid_json" },
    });
  });

  it("ignores what it does not understand", () => {
    expect(parseServerMessage("not json")).toBeNull();
    expect(parseServerMessage('{"type":"chat.delta"}')).toBeNull();
    expect(parseServerMessage('{"type":"party","id":"x"}')).toBeNull();
    expect(parseServerMessage("[1]")).toBeNull();
  });

  it("writes requests and cancels", () => {
    expect(JSON.parse(chatRequest("r1", { model: "echo", messages: [{ role: "user", content: "hi" }] }))).toEqual({
      type: "chat.request",
      id: "r1",
      body: { model: "echo", messages: [{ role: "user", content: "hi" }] },
    });
    expect(JSON.parse(cancelRequest("r1"))).toEqual({ type: "cancel", id: "r1" });
  });
});
