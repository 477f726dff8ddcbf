import { describe, expect, it } from "vitest";
import type { Key } from "../../api/keys";
import { keyStatus } from "../../api/keys";
import { checkFields, createInput, emptyFields, fieldsOf, limitsPatch, modelList, wholeNumber } from "./keyForm";

describe("key forms", () => {
  it("reads whole numbers, blanks and junk", () => {
    expect(wholeNumber(" 60 ")).toBe(60);
    expect(wholeNumber("")).toBeNull();
    expect(wholeNumber("1.5")).toBeNaN();
    expect(wholeNumber("-3")).toBe(-3);
  });

  it("splits model lists on commas and lines", () => {
    expect(modelList("smollm2, openai/*\necho")).toEqual(["smollm2", "openai/*", "echo"]);
    expect(modelList(" , ")).toBeNull();
  });

  it("sends every field the admin API takes, and only the filled ones", () => {
    expect(createInput({ ...emptyFields, name: " team-a " })).toEqual({ name: "team-a" });
    expect(
      createInput({
        ...emptyFields,
        name: "team-a",
        owner: "ops",
        rpm: "60",
        tpm: "1000",
        token_budget: "50000",
        max_concurrency: "4",
        allowed_models: "echo",
        expires_in_days: "30",
      }),
    ).toEqual({
      name: "team-a",
      owner: "ops",
      rpm: 60,
      tpm: 1000,
      token_budget: 50000,
      max_concurrency: 4,
      allowed_models: ["echo"],
      expires_in_days: 30,
    });
  });

  it("finds problems before asking the gateway", () => {
    expect(checkFields(emptyFields, true)).toEqual({ field: "name", message: "keys.errors.nameRequired" });
    expect(checkFields({ ...emptyFields, name: "a", rpm: "ten" }, true)?.field).toBe("rpm");
    expect(checkFields({ ...emptyFields, name: "a", expires_in_days: "3", expires_at: "2099-01-01T00:00" }, true)?.message).toBe(
      "keys.errors.oneExpiry",
    );
    expect(checkFields({ ...emptyFields, name: "a", rpm: "-1" }, true)).toBeNull();
  });

  it("clears blank limits when editing", () => {
    const key: Key = {
      id: 3,
      name: "k",
      prefix: "sk-gw-ab",
      owner: null,
      created_at: 0,
      expires_at: null,
      revoked_at: null,
      rpm: 60,
      tpm: null,
      token_budget: 100,
      allowed_models: ["echo"],
      max_concurrency: null,
    };
    const fields = fieldsOf(key);
    expect(fields.rpm).toBe("60");
    expect(limitsPatch({ ...fields, rpm: "", tpm: "500" })).toEqual({
      name: "k",
      rpm: null,
      tpm: 500,
      token_budget: 100,
      max_concurrency: null,
      allowed_models: ["echo"],
      expires_at: null,
    });
    expect(keyStatus(key)).toBe("active");
    expect(keyStatus({ ...key, revoked_at: 1 })).toBe("revoked");
    expect(keyStatus({ ...key, expires_at: 1 }, 2)).toBe("expired");
  });
});
