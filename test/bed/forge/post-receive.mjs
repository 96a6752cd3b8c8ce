#!/usr/bin/env node
// The forge's post-receive hook: hands the pushed ref updates to the forge
// process, which turns them into GitHub `push` webhooks.
import { readFileSync } from "node:fs";

const lines = readFileSync(0, "utf8")
  .split("\n")
  .filter((line) => line.trim() !== "");
const response = await fetch(`${process.env.TIDEMARK_FORGE_CONTROL}/_bed/post-receive`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ gitDir: process.cwd(), pusher: process.env.REMOTE_USER ?? "", updates: lines }),
});
if (!response.ok) {
  console.error(`forge: webhook dispatch failed: ${response.status} ${await response.text()}`);
  process.exit(1);
}
