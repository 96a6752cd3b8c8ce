import { describe, expect, it } from "vitest";
import { movesForward, tracksRef } from "../../src/core/track.js";

describe("which pushes move an environment", () => {
  it("matches a branch, a pinned tag, or a tag pattern, never across namespaces", () => {
    expect(tracksRef({ branch: "main" }, "refs/heads/main")).toBe(true);
    expect(tracksRef({ branch: "main" }, "refs/tags/main")).toBe(false);
    expect(tracksRef({ branch: "main" }, "refs/heads/main-2")).toBe(false);
    expect(tracksRef({ tag: "production" }, "refs/tags/production")).toBe(true);
    expect(tracksRef({ tag: "production" }, "refs/heads/production")).toBe(false);
    expect(tracksRef({ tags: "v*", prerelease: false }, "refs/tags/v1.3.0")).toBe(true);
    expect(tracksRef({ tags: "v*", prerelease: false }, "refs/tags/release-1")).toBe(false);
    expect(tracksRef({ tags: "v1.?.*", prerelease: false }, "refs/tags/v1.2.0")).toBe(true);
    expect(tracksRef({ tags: "v1.?.*", prerelease: false }, "refs/tags/v1.10.0")).toBe(false);
  });

  it("lets a tag pattern move forward only; branches and pins go wherever they point", () => {
    const tags = { tags: "v*", prerelease: false };
    expect(movesForward(tags, "refs/tags/v1.3.0", "refs/tags/v1.10.0")).toBe(true);
    expect(movesForward(tags, "refs/tags/v1.3.0", "refs/tags/v1.3.0")).toBe(true);
    expect(movesForward(tags, "refs/tags/v1.3.0", "refs/tags/v1.2.9")).toBe(false);
    expect(movesForward(tags, undefined, "refs/tags/v0.1.0")).toBe(true);
    // Deployed from a branch or a sha before (tidemark deploy --ref): no version to compare.
    expect(movesForward(tags, "refs/heads/main", "refs/tags/v0.1.0")).toBe(true);
    expect(movesForward({ tag: "production" }, "refs/tags/production", "refs/tags/production")).toBe(true);
    expect(movesForward({ branch: "main" }, "refs/heads/main", "refs/heads/main")).toBe(true);
  });
});
