// Verifies the deliveries scripts/webhook-sink logged with the Standard Webhooks authors'
// JavaScript library, as the README's Node example does: node verify_webhooks.mjs SECRET LOG
// (the library is resolved from NODE_PATH). Prints how many verified; exits 1 on any failure.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Webhook } = require("standardwebhooks");
const [secret, log] = process.argv.slice(2);
const wh = new Webhook(secret);
let ok = 0;
const failed = [];
for (const text of readFileSync(log, "utf8").split("\n").filter(Boolean)) {
  const line = JSON.parse(text);
  try {
    const event = wh.verify(line.raw.body, line.raw.headers);
    if (!event.type) throw new Error("no type");
    ok += 1;
  } catch (e) {
    failed.push(`${line.webhook_id}: ${e.message}`);
  }
}
console.log(`  ${ok} deliveries verified by the JavaScript library`);
if (failed.length) {
  console.error(`  FAIL  ${failed.length} not verified: ${failed.slice(0, 3).join("; ")}`);
  process.exit(1);
}
