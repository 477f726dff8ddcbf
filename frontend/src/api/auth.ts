//! `POST /auth/login` → a session.

import { useMutation } from "@tanstack/react-query";
import { apiRequest } from "./client";
import { jwtExpiry, signIn, type Role, type Session } from "./session";

interface TokenReply {
  access_token: string;
  token_type: string;
  expires_in: number;
  role: string;
}

export interface Credentials {
  username: string;
  password: string;
}

export async function login({ username, password }: Credentials, now = Date.now()): Promise<Session> {
  const reply = await apiRequest<TokenReply>("/auth/login", {
    method: "POST",
    body: { username, password },
    credential: "",
  });
  const role: Role = reply.role === "admin" ? "admin" : "viewer";
  const session: Session = {
    token: reply.access_token,
    role,
    username,
    expiresAt: jwtExpiry(reply.access_token) ?? now + reply.expires_in * 1000,
  };
  signIn(session);
  return session;
}

export function useLogin() {
  return useMutation({ mutationFn: (credentials: Credentials) => login(credentials) });
}
