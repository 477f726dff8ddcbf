//! What standard GraphQL clients do: fetch the schema with graphql-js's introspection query,
//! build a client schema from it, and validate operations against it — here, every example
//! operation in the README.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { buildClientSchema, getIntrospectionQuery, parse, validate, type IntrospectionQuery } from "graphql";
import { adminToken } from "./api";
import { expect, test } from "./fixtures";
import { ROOT } from "./stack";

/** The README's ```graphql blocks, cut into operations (one starts at a line beginning with `{` or `mutation`). */
export function readmeOperations(): string[] {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```graphql\n([\s\S]*?)```/g)].map((match) => match[1] ?? "");
  const operations: string[] = [];
  for (const block of blocks) {
    for (const line of block.split("\n")) {
      const code = line.replace(/#.*$/, "").trimEnd();
      if (!code.trim()) continue;
      if (/^(\{|mutation\b|query\b)/.test(code) || operations.length === 0) operations.push(code);
      else operations[operations.length - 1] += `\n${code}`;
    }
  }
  return operations;
}

test("the standard introspection query builds a client schema that the README's examples validate against", async ({
  request,
  stack,
}) => {
  const token = await adminToken(request, stack);
  const reply = await request.post("/graphql", {
    data: { query: getIntrospectionQuery() },
    headers: { Authorization: `Bearer ${token}` },
  });
  expect(reply.status(), await reply.text()).toBe(200);
  const body = (await reply.json()) as { data: IntrospectionQuery; errors?: unknown[] };
  expect(body.errors).toBeUndefined();
  const schema = buildClientSchema(body.data);
  expect(Object.keys(schema.getQueryType()?.getFields() ?? {})).toEqual(
    expect.arrayContaining(["me", "models", "services", "usage", "keys"]),
  );

  const operations = readmeOperations();
  expect(operations.length).toBeGreaterThanOrEqual(6);
  for (const operation of operations) {
    const errors = validate(schema, parse(operation)).map((error) => error.message);
    expect(errors, operation).toEqual([]);
  }
});
