import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import i18n from "../../i18n";
import { fakeFetch } from "../../testing/fakeFetch";
import { renderPage } from "../../testing/render";
import { UsagePage } from "./UsagePage";

const line = (group: string, requests: number, estimated = 0, cached = 0) => ({
  group,
  requests,
  prompt_tokens: requests * 10,
  completion_tokens: requests * 20,
  total_tokens: requests * 30,
  estimated_requests: estimated,
  cached_requests: cached,
});

describe("Usage page", () => {
  beforeEach(async () => {
    await i18n.changeLanguage("en");
  });

  it("shows totals, reported vs estimated, and names keys", async () => {
    const calls = fakeFetch({
      "GET /admin/usage": (call) => {
        const groupBy = new URL(call.path, "http://x").searchParams.get("group_by");
        const data =
          groupBy === "model"
            ? [line("echo", 3, 1, 1), line("smollm2", 2)]
            : groupBy === "key"
              ? [line("7", 4, 1, 1), line("none", 1)]
              : [line("2026-03-01", 5, 1, 1)];
        return { body: { object: "list", data } };
      },
      "GET /admin/keys": () => ({ body: { data: [{ id: 7, name: "team-a" }] } }),
    });
    const user = userEvent.setup();
    renderPage(<UsagePage />);
    const totals = screen.getByRole("group", { name: "Totals" });
    await waitFor(() => expect(within(totals).getByRole("group", { name: "Requests" })).toHaveTextContent("Requests5"));
    expect(within(totals).getByRole("group", { name: "Total tokens" })).toHaveTextContent("150");
    expect(within(totals).getByRole("group", { name: "Tokens reported" })).toHaveTextContent("4");
    expect(within(totals).getByRole("group", { name: "Tokens estimated" })).toHaveTextContent("1");
    expect(within(totals).getByRole("group", { name: "Cached answers" })).toHaveTextContent("1");
    expect(await screen.findByRole("rowheader", { name: "Mar 1, 2026" })).toBeInTheDocument();

    await user.click(screen.getByRole("radio", { name: "By key" }));
    expect(await screen.findByRole("rowheader", { name: "team-a" })).toBeInTheDocument();
    expect(screen.getByRole("rowheader", { name: "Dashboard (no key)" })).toBeInTheDocument();

    const days = calls.filter((c) => c.path.includes("group_by=day"));
    const query = new URL(days[0]?.path ?? "", "http://x").searchParams;
    expect(Number(query.get("to")) - Number(query.get("from"))).toBe(7 * 86_400_000);
  });

  it("says when the range is backwards", async () => {
    fakeFetch({ "GET /admin/usage": () => ({ body: { data: [] } }), "GET /admin/keys": () => ({ body: { data: [] } }) });
    const user = userEvent.setup();
    renderPage(<UsagePage />);
    const from = screen.getByLabelText("From");
    await user.clear(from);
    await user.type(from, "2999-01-01");
    expect(await screen.findByRole("alert")).toHaveTextContent("The start date must not be after the end date.");
  });
});
