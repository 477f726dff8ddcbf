//! The playground's conversation over one ChatSocket: streams, cancels, and measures time to
//! first token and tokens per second.

import { useCallback, useEffect, useRef, useState } from "react";
import { ChatSocket, type ChatSocketDeps } from "./chatSocket";
import type { ChatMessage, Usage, WsError } from "./protocol";

export interface Turn extends ChatMessage {
  /** The reply ended by Stop rather than completing. */
  cancelled?: boolean;
}

export interface RunStats {
  firstTokenMs: number | null;
  tokensPerSecond: number | null;
  usage: Usage | null;
}

export type ChatStatus = "idle" | "connecting" | "streaming" | "stopping";

export interface ChatFailure {
  status: number;
  error: WsError;
}

/** Completion tokens per second after the first token (deltas counted when no usage came). */
export function tokensPerSecond(tokens: number, firstTokenAt: number | null, endAt: number): number | null {
  if (firstTokenAt === null || tokens <= 0) return null;
  const seconds = (endAt - firstTokenAt) / 1000;
  return seconds > 0 ? tokens / seconds : null;
}

export function useChat(credential: string | null, deps?: ChatSocketDeps) {
  const [turns, setTurns] = useState<Turn[]>([]);
  const [status, setStatus] = useState<ChatStatus>("idle");
  const [stats, setStats] = useState<RunStats | null>(null);
  const [failure, setFailure] = useState<ChatFailure | null>(null);
  const socket = useRef<ChatSocket | null>(null);
  const running = useRef<string | null>(null);

  useEffect(() => {
    const created = new ChatSocket(credential, deps);
    socket.current = created;
    return () => {
      created.close();
      socket.current = null;
    };
  }, [credential, deps]);

  const appendToReply = (text: string) =>
    setTurns((all) => {
      const last = all[all.length - 1];
      if (!last || last.role !== "assistant") return [...all, { role: "assistant", content: text }];
      return [...all.slice(0, -1), { ...last, content: last.content + text }];
    });

  const send = useCallback(
    async (model: string, content: string, maxTokens: number | null) => {
      const chat = socket.current;
      if (!chat || running.current) return;
      const history: Turn[] = [...turns, { role: "user", content }];
      setTurns([...history, { role: "assistant", content: "" }]);
      setFailure(null);
      setStats(null);
      setStatus("connecting");
      const startedAt = performance.now();
      let firstAt: number | null = null;
      let deltas = 0;
      const finish = (usage: Usage | null) => {
        const end = performance.now();
        running.current = null;
        setStatus("idle");
        setStats({
          firstTokenMs: firstAt === null ? null : firstAt - startedAt,
          tokensPerSecond: tokensPerSecond(usage?.completion_tokens ?? deltas, firstAt, end),
          usage,
        });
      };
      try {
        running.current = await chat.start(
          {
            model,
            messages: history.map(({ role, content: text }) => ({ role, content: text })),
            ...(maxTokens ? { max_tokens: maxTokens } : {}),
          },
          {
            onDelta: (text) => {
              if (firstAt === null && text) firstAt = performance.now();
              if (text) deltas += 1;
              appendToReply(text);
            },
            onDone: finish,
            onCancelled: () => {
              finish(null);
              setTurns((all) => all.map((turn, i) => (i === all.length - 1 ? { ...turn, cancelled: true } : turn)));
            },
            onError: (code, error) => {
              finish(null);
              setFailure({ status: code, error });
            },
          },
        );
        setStatus((now) => (now === "connecting" ? "streaming" : now));
      } catch (error) {
        running.current = null;
        setStatus("idle");
        setFailure({ status: 0, error: { message: error instanceof Error ? error.message : String(error) } });
      }
    },
    [turns],
  );

  const stop = useCallback(() => {
    if (!running.current || !socket.current) return;
    setStatus("stopping");
    socket.current.cancel(running.current);
  }, []);

  const clear = useCallback(() => {
    if (running.current) return;
    setTurns([]);
    setStats(null);
    setFailure(null);
  }, []);

  return { turns, status, stats, failure, send, stop, clear };
}
