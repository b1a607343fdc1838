// Parses an AsyncAPI document with the official parser (@asyncapi/parser) and fails on
// any error; warnings are printed. Usage: node asyncapi-check.mjs path/to/asyncapi.json
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2];
if (!path) {
  console.error("usage: node asyncapi-check.mjs <asyncapi.json>");
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"));
const severities = ["error", "warning", "info", "hint"];
let errors = 0;
for (const d of diagnostics) {
  const severity = severities[d.severity] ?? String(d.severity);
  if (d.severity === 0) errors += 1;
  console.log(`${severity}: ${d.message} at /${(d.path ?? []).join("/")}`);
}
if (errors > 0 || document === undefined) {
  console.error(`${path}: ${errors} error(s)`);
  process.exit(1);
}
const operations = document.operations().all().length;
const messages = document.messages().all().length;
console.log(`${path}: valid AsyncAPI ${document.version()} (${operations} operations, ${messages} messages)`);
