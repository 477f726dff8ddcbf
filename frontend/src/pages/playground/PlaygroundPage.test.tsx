import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { Session } from "../../api/session";
import i18n from "../../i18n";
import { fakeFetch, fakeJwt } from "../../testing/fakeFetch";
import { renderPage } from "../../testing/render";
import type { ChatSocketDeps, SocketLike } from "../../ws/chatSocket";
import { PlaygroundPage } from "./PlaygroundPage";

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: { type: string; id: string; body?: unknown }[] = [];
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  send(data: string) {
    this.sent.push(JSON.parse(data) as { type: string; id: string });
  }
  close() {
    this.readyState = 3;
  }
  receive(message: object) {
    this.onmessage?.(new MessageEvent("message", { data: JSON.stringify(message) }));
  }
}

const admin: Session = {
  token: fakeJwt(Date.now() + 3_600_000),
  role: "admin",
  username: "ada",
  expiresAt: Date.now() + 3_600_000,
};

function setup() {
  const socket = new FakeSocket();
  const deps: ChatSocketDeps = {
    fetchTicketUrl: vi.fn(async () => "/v1/ws?ticket=wst_1"),
    createSocket: () => {
      queueMicrotask(() => {
        socket.readyState = 1;
        socket.onopen?.(new Event("open"));
      });
      return socket;
    },
  };
  return { socket, deps };
}

const delta = (id: string, content: string) => ({ type: "chat.delta", id, chunk: { choices: [{ delta: { content } }] } });

describe("Playground", () => {
  beforeEach(async () => {
    await i18n.changeLanguage("en");
    fakeFetch({ "POST /graphql": () => ({ body: { data: { models: [{ name: "echo" }, { name: "smollm2" }] } } }) });
  });

  it("streams an answer token by token and shows usage from chat.done", async () => {
    const { socket, deps } = setup();
    const user = userEvent.setup();
    renderPage(<PlaygroundPage session={admin} chatDeps={deps} />);
    await screen.findByRole("option", { name: "smollm2" });
    await user.selectOptions(screen.getByLabelText("Model"), "smollm2");
    await user.type(screen.getByLabelText("Message", { selector: "textarea" }), "Hi there");
    await user.click(screen.getByRole("button", { name: "Send" }));
    await waitFor(() => expect(socket.sent).toHaveLength(1));
    const request = socket.sent[0];
    expect(request).toMatchObject({
      type: "chat.request",
      body: { model: "smollm2", messages: [{ role: "user", content: "Hi there" }], max_tokens: 64 },
    });
    const id = request?.id ?? "";
    socket.receive(delta(id, "Hel"));
    expect(await screen.findByText("Hel")).toBeInTheDocument();
    socket.receive(delta(id, "lo"));
    expect(await screen.findByText("Hello")).toBeInTheDocument();
    socket.receive({ type: "chat.done", id, usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } });
    expect(await screen.findByText("5 prompt + 2 completion = 7 tokens")).toBeInTheDocument();
    expect(screen.getByText("Time to first token")).toBeInTheDocument();
  });

  it("Stop sends cancel, and errors are shown in words", async () => {
    const { socket, deps } = setup();
    const user = userEvent.setup();
    renderPage(<PlaygroundPage session={admin} chatDeps={deps} />);
    await screen.findByRole("option", { name: "echo" });
    await user.type(screen.getByLabelText("Message", { selector: "textarea" }), "Long story");
    await user.click(screen.getByRole("button", { name: "Send" }));
    await waitFor(() => expect(screen.getByRole("button", { name: "Stop" })).toBeEnabled());
    const id = socket.sent[0]?.id ?? "";
    socket.receive(delta(id, "Once"));
    await user.click(screen.getByRole("button", { name: "Stop" }));
    expect(socket.sent[1]).toEqual({ type: "cancel", id });
    socket.receive({ type: "chat.cancelled", id });
    expect(await screen.findByText("(stopped)")).toBeInTheDocument();

    await user.type(screen.getByLabelText("Message", { selector: "textarea" }), "Again");
    await user.click(screen.getByRole("button", { name: "Send" }));
    await waitFor(() => expect(socket.sent).toHaveLength(3));
    socket.receive({
      type: "error",
      id: socket.sent[2]?.id,
      status: 429,
      error: { message: "Rate limit reached.", code: "rate_limit_exceeded" },
    });
    expect(await screen.findByRole("alert")).toHaveTextContent("Error 429 rate_limit_exceeded: Rate limit reached.");
  });
});
