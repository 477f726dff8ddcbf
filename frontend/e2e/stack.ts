//! The real stack as `make run` starts it — gateway, python-models, the echo mock — on free
//! ports, with a temporary SQLite database and an admin user made with the gateway's CLI.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..", "..");
const TARGET = process.env.CARGO_TARGET_DIR ?? join(ROOT, "target");
export const GATEWAY_BIN = join(TARGET, "debug", "gateway");
export const MOCK_BIN = join(TARGET, "debug", "mock-upstream");

/** What the tests need to know about the running stack (written to $E2E_STATE as JSON). */
export interface StackState {
  baseURL: string;
  dir: string;
  admin: { username: string; password: string };
  echo: { bind: string; args: string[]; pid: number };
  pids: number[];
}

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? done(address.port) : fail(new Error("no port"))));
    });
  });
}

/** Starts a process in its own group, its output in `<dir>/<name>.log`. */
export function start(dir: string, name: string, command: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const log = openSync(join(dir, `${name}.log`), "a");
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", log, log],
    detached: true,
  });
  child.unref();
  if (child.pid === undefined) throw new Error(`${name} did not start`);
  return child;
}

/** The echo mock: as `make run` starts it, but streaming its words 40 ms apart so Stop has a stream to stop. */
export function echoArgs(bind: string): string[] {
  return ["--bind", bind, "--name", "echo", "--chunks", "40", "--chunk-delay-ms", "40"];
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, logs?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  const tail = logs && existsSync(logs) ? `\n--- ${logs}\n${readFileSync(logs, "utf8").slice(-3000)}` : "";
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${tail}`);
}

function envFile(): Record<string, string> {
  const text = readFileSync(join(ROOT, ".env.development"), "utf8");
  return Object.fromEntries(
    text
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith("#") && line.includes("="))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

export async function startStack(): Promise<StackState> {
  for (const [bin, hint] of [
    [GATEWAY_BIN, "cargo build -p gateway -p mock-upstream"],
    [MOCK_BIN, "cargo build -p gateway -p mock-upstream"],
    [join(ROOT, "python-models", ".venv", "bin", "python"), "make python-install"],
    [join(ROOT, "frontend", "dist", "index.html"), "npm --prefix frontend run build"],
  ] as const) {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`${hint}\` first (make e2e does)`);
  }
  const dir = mkdtempSync(join(tmpdir(), "aigw-e2e-"));
  const [free, metrics, http, grpc, echo] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  // A fixed port only when asked (to put `vite preview`/`vite` in front of this gateway by hand).
  const gateway = Number(process.env.E2E_GATEWAY_PORT ?? free);
  writeFileSync(
    join(dir, "services.json"),
    JSON.stringify({
      "python-models": { host: "127.0.0.1", port: http, grpc_port: grpc, protocol: "http", health_check: "/health" },
      echo: { host: "127.0.0.1", port: echo, protocol: "http", health_check: "/health" },
    }),
  );
  const pids: number[] = [];
  const models = start(dir, "python-models", join(ROOT, "python-models", "run.sh"), [], {
    PORT: String(http),
    GRPC_PORT: String(grpc),
  });
  pids.push(models.pid ?? 0);
  const echoBind = `127.0.0.1:${echo}`;
  const mock = start(dir, "echo", MOCK_BIN, echoArgs(echoBind));
  pids.push(mock.pid ?? 0);
  const env = {
    ...envFile(),
    GATEWAY_BIND: `127.0.0.1:${gateway}`,
    METRICS_BIND: `127.0.0.1:${metrics}`,
    SERVICE_DISCOVERY_STATIC_FILE: join(dir, "services.json"),
    DATABASE_URL: `sqlite://${join(dir, "gateway.db")}`,
    JWT_SECRET: randomBytes(32).toString("hex"),
    DASHBOARD_DIR: join(ROOT, "frontend", "dist"),
    // Every test signs in; the per-IP login limit (10/min) is for password guessers, not for this.
    GATEWAY__RATE_LIMIT__LOGIN_REQUESTS_PER_MINUTE: "1000",
    RUST_LOG: "warn",
  };
  const server = start(dir, "gateway", GATEWAY_BIN, ["serve"], env);
  pids.push(server.pid ?? 0);
  const baseURL = `http://127.0.0.1:${gateway}`;
  const state: StackState = {
    baseURL,
    dir,
    admin: { username: "admin", password: randomBytes(12).toString("hex") },
    echo: { bind: echoBind, args: echoArgs(echoBind), pid: mock.pid ?? 0 },
    pids,
  };
  writeFileSync(join(dir, "state.json"), JSON.stringify(state));
  try {
    await waitFor("the gateway to be ready", async () => (await fetch(`${baseURL}/ready`)).ok, 180_000, join(dir, "gateway.log"));
    const created = spawnSync(GATEWAY_BIN, ["users", "create", "--username", state.admin.username, "--role", "admin"], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      input: `${state.admin.password}\n`,
      encoding: "utf8",
    });
    if (created.status !== 0) throw new Error(`gateway users create failed: ${created.stderr}`);
  } catch (error) {
    stopStack(state);
    throw error;
  }
  return state;
}

export function readState(): StackState {
  const path = process.env.E2E_STATE;
  if (!path) throw new Error("E2E_STATE is not set: run the tests through playwright (global setup starts the stack)");
  return JSON.parse(readFileSync(path, "utf8")) as StackState;
}

export function updateState(state: StackState): void {
  writeFileSync(join(state.dir, "state.json"), JSON.stringify(state));
}

export function stopStack(state: StackState): void {
  for (const pid of [...state.pids, state.echo.pid]) {
    try {
      process.kill(-pid, "SIGTERM");
    } catch {
      // Already gone.
    }
  }
}
