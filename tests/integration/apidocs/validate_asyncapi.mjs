// Validate an AsyncAPI document with the official parser (@asyncapi/parser).
//
// usage: node validate_asyncapi.mjs DOCUMENT.json NODE_MODULES_DIR
// Prints the parser's diagnostics as one JSON array on stdout:
// [{"code", "message", "path", "severity"}], severity 0 error, 1 warning, 2 info, 3 hint.
// Exits 0 when the document was parsed (whatever the diagnostics say), 1 when the parser
// itself could not be loaded or crashed.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const [documentPath, nodeModules] = process.argv.slice(2);
if (!documentPath || !nodeModules) {
  console.error("usage: node validate_asyncapi.mjs DOCUMENT.json NODE_MODULES_DIR");
  process.exit(1);
}
// Resolve packages as a module living beside NODE_MODULES_DIR would.
const require = createRequire(path.join(path.resolve(nodeModules), "..", "validate.cjs"));
const { Parser } = require("@asyncapi/parser");

const parser = new Parser();
const { diagnostics } = await parser.parse(readFileSync(documentPath, "utf8"), {
  source: path.resolve(documentPath),
});
const out = diagnostics.map((d) => ({
  code: String(d.code),
  message: d.message,
  path: d.path,
  severity: d.severity,
}));
process.stdout.write(JSON.stringify(out) + "\n");
