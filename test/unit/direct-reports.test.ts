import { RequestError } from "@octokit/request-error";
import { describe, expect, it, vi } from "vitest";
import { finalReports, startReports, type Report } from "../../src/core/reports.js";
import { DirectReports } from "../../src/github/direct-reports.js";

const SHA = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b";
const facts = { id: "20261122T101010Z-abcdef", environment: "staging", sourceCommit: SHA, hostStatuses: true };
const hosts = [
  { host: "web01", outcome: "deployed" as const },
  { host: "web02", outcome: "deployed" as const },
];
const name = (report: Report) =>
  report.kind === "status" ? `${report.status.context} ${report.status.state}` : `deployment ${report.deployment.state}`;
const error = (status: number) =>
  new RequestError(status >= 500 ? "Server Error" : "Bad credentials", status, {
    request: { method: "POST", url: "http://127.0.0.1/statuses", headers: {} },
  });

/** A GitHub that answers each report by name: the errors queued for it first, then success; it keeps what it accepted, in order. */
function fakeGitHub(failures: Record<string, number[]> = {}) {
  const posted: string[] = [];
  const tries: string[] = [];
  return {
    posted,
    tries,
    post(report: Report, signal?: AbortSignal) {
      const key = name(report);
      tries.push(key);
      const status = failures[key]?.shift();
      if (status === 0) return new Promise((_, reject) => signal?.addEventListener("abort", () => reject(new Error("aborted")))); // hangs until given up
      if (status !== undefined) return Promise.reject(error(status));
      posted.push(key);
      return Promise.resolve();
    },
  };
}

describe("reports posted by the CLI itself, in order, within a deadline", () => {
  it("posts every host's final status before the environment's even when one fails first, and retries it", async () => {
    const github = fakeGitHub({ "tidemark/staging/web02 success": [502, 502] });
    const reports = new DirectReports(github, [5]);
    reports.send(startReports(facts, ["web01", "web02"]));
    // The deployment runs meanwhile: its start is out before its end is sent.
    await vi.waitFor(() => expect(github.posted).toContain("deployment in_progress"));
    reports.send(finalReports({ ...facts, hosts }));
    expect(await reports.finish(5000)).toEqual([]);
    expect(github.posted).toEqual([
      "tidemark/staging pending",
      "tidemark/staging/web01 pending",
      "tidemark/staging/web02 pending",
      "deployment in_progress",
      "tidemark/staging/web01 success",
      "tidemark/staging/web02 success",
      "tidemark/staging success",
      "deployment success",
    ]);
    expect(github.tries.filter((tried) => tried === "tidemark/staging/web02 success")).toHaveLength(3);
  });

  it("skips a report that a newer one of the same status replaced while it waited to be tried again", async () => {
    const github = fakeGitHub({ "tidemark/staging pending": [503] });
    const reports = new DirectReports(github, [50]);
    reports.send(startReports(facts, ["web01"]));
    await vi.waitFor(() => expect(github.tries).toContain("tidemark/staging pending"));
    reports.send(finalReports({ ...facts, hosts: [hosts[0]!] }));
    expect(await reports.finish(5000)).toEqual([]);
    // Nothing of the start is posted over, or after, the end it would only contradict.
    expect(github.posted).toEqual(["tidemark/staging/web01 success", "tidemark/staging success", "deployment success"]);
    expect(github.tries).toEqual(["tidemark/staging pending", ...github.posted]);
  });

  it("gives up at the deadline, naming what was not posted; a refused report does not let the ones behind it overtake it", async () => {
    const github = fakeGitHub({ "tidemark/staging/web02 success": [0] });
    const reports = new DirectReports(github, [5]);
    reports.send(finalReports({ ...facts, hosts }));
    const started = Date.now();
    const unposted = await reports.finish(200);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(github.posted).toEqual(["tidemark/staging/web01 success"]);
    expect(unposted.map(({ report, reason }) => `${name(report)}: ${reason}`)).toEqual([
      "tidemark/staging/web02 success: aborted (given up at the deadline)",
      "tidemark/staging success: waits behind a report that was not posted",
      "deployment success: waits behind a report that was not posted",
    ]);

    const refused = fakeGitHub({ "tidemark/staging/web01 success": [401] });
    const more = new DirectReports(refused, [5]);
    more.send(finalReports({ ...facts, hosts }));
    expect((await more.finish(5000)).map(({ report, reason }) => `${name(report)}: ${reason}`)).toEqual([
      "tidemark/staging/web01 success: Bad credentials",
      "tidemark/staging/web02 success: waits behind a report that was not posted",
      "tidemark/staging success: waits behind a report that was not posted",
      "deployment success: waits behind a report that was not posted",
    ]);
    // A 4xx says the request is refused: it is not tried again.
    expect(refused.tries).toEqual(["tidemark/staging/web01 success"]);
  });
});
