// Delivers GitHub's own example payloads (@octokit/webhooks-examples), signed with octokit's
// sign() (@octokit/webhooks-methods), to berthd's webhook listener, as GitHub would; and the
// deliveries it must refuse. Prints one line per delivery: STATUS BODY.
//
//   node deliver.mjs send URL SECRET EVENT ACTION [--id JOB] [--delivery ID] [--runner NAME]
//                                                  [--labels a,b] [--example N]
//   node deliver.mjs refusals URL SECRET     every refusal case, as "CASE STATUS" lines
//   node deliver.mjs flood HOST PORT SECONDS  connections that pipeline and never read
//   node deliver.mjs burst URL SECRET COUNT CONCURRENCY FIRST_JOB [LABELS]
//                                             queued jobs FIRST_JOB.., each job id printed once
//                                             its delivery was answered 200
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { sign } from "@octokit/webhooks-methods";

const require = createRequire(import.meta.url);
const examples = require("@octokit/webhooks-examples");

function example(event, action, index = 0) {
  const e = examples.find((x) => x.name === event);
  if (!e) throw new Error(`no examples for ${event}`);
  const all = e.examples.filter((x) => !action || x.action === action);
  if (!all.length) throw new Error(`no ${event}.${action} example`);
  return structuredClone(all[Math.min(index, all.length - 1)]);
}

function post(url, body, headers) {
  return new Promise((resolve) => {
    const client = url.startsWith("https:") ? https : http;
    const req = client.request(url, { method: "POST", headers }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode, body: text.trim() }));
    });
    req.on("error", (e) => resolve({ status: 0, body: e.code || String(e) }));
    req.setTimeout(15000, () => req.destroy(new Error("timeout")));
    req.end(body);
  });
}

async function deliver(url, secret, event, payload, delivery) {
  const body = JSON.stringify(payload);
  return post(url, body, {
    "Content-Type": "application/json",
    "X-GitHub-Event": event,
    "X-GitHub-Delivery": delivery || randomUUID(),
    "X-Hub-Signature-256": await sign(secret, body),
  });
}

// Raw bytes on a socket; resolves with the status line's code, or 0 when closed unanswered.
function raw(host, port, chunks, { gapMs = 0, endAfter = true, waitMs = 15000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    let got = "";
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      resolve(m ? Number(m[1]) : 0);
    };
    const timer = setTimeout(finish, waitMs);
    s.on("data", (d) => {
      got += d;
      if (got.includes("\r\n\r\n")) finish();
    });
    s.on("close", finish);
    s.on("error", finish);
    s.on("connect", async () => {
      for (const c of chunks) {
        if (s.destroyed) return;
        s.write(c);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
      if (endAfter) s.end();
    });
  });
}

async function refusals(url, secret) {
  const u = new URL(url);
  const payload = example("workflow_job", "queued");
  payload.workflow_job.id = 990001;
  const body = JSON.stringify(payload);
  const good = await sign(secret, body);
  const head = (extra, length = Buffer.byteLength(body)) =>
    `POST ${u.pathname} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
    `X-GitHub-Event: workflow_job\r\nX-GitHub-Delivery: ${randomUUID()}\r\n${extra}` +
    `Content-Length: ${length}\r\nConnection: close\r\n\r\n`;
  const h = (sig) => ({ "Content-Type": "application/json", "X-GitHub-Event": "workflow_job",
    "X-GitHub-Delivery": randomUUID(), ...(sig ? { "X-Hub-Signature-256": sig } : {}) });
  const out = [];
  const say = (name, status) => { out.push(`${name} ${status}`); console.log(`${name} ${status}`); };
  say("bad_signature", (await post(url, body, h("sha256=" + "0".repeat(64)))).status);
  say("missing_signature", (await post(url, body, h(null))).status);
  say("wrong_secret", (await post(url, body, h(await sign("not-the-secret", body)))).status);
  say("other_body", (await post(url, body, h(await sign(secret, body + " ")))).status);
  say("malformed_signature", (await post(url, body, h("sha1=abc"))).status);
  // Truncated: the length promises more than is sent, then the sender stops.
  say("truncated_body", await raw(u.hostname, u.port,
    [head(`X-Hub-Signature-256: ${good}\r\n`), body.slice(0, body.length - 40)]));
  say("body_over_limit", await raw(u.hostname, u.port,
    [head(`X-Hub-Signature-256: ${good}\r\n`, 26 * 1024 * 1024)], { endAfter: false }));
  say("header_over_limit", await raw(u.hostname, u.port,
    [head(`X-Padding: ${"a".repeat(20 * 1024)}\r\nX-Hub-Signature-256: ${good}\r\n`), body]));
  // A slow sender: one byte of the request every 300 ms; dropped at the read deadline.
  const slow = head(`X-Hub-Signature-256: ${good}\r\n`) + body;
  const t0 = Date.now();
  const slowStatus = await raw(u.hostname, u.port, slow.split(""), { gapMs: 300, waitMs: 20000 });
  say("slow_sender", `${slowStatus} after ${Math.round((Date.now() - t0) / 1000)}s`);
  // More connections than the cap: the ones over it are closed unanswered at once.
  const held = [];
  for (let i = 0; i < 40; i++) {
    held.push(await new Promise((resolve) => {
      const s = net.connect(u.port, u.hostname);
      s.on("error", () => {});
      s.on("connect", () => resolve(s));
    }));
  }
  await new Promise((r) => setTimeout(r, 300));
  const closed = held.filter((s) => s.destroyed || s.readableEnded).length;
  const probe = await raw(u.hostname, u.port, [head(`X-Hub-Signature-256: ${good}\r\n`), body],
    { waitMs: 2000 });
  held.forEach((s) => s.destroy());
  say("over_connection_cap", `${closed} of 40 closed; one more got ${probe}`);
  await new Promise((r) => setTimeout(r, 300));
  say("after_cap", (await post(url, body, h("sha256=" + "1".repeat(64)))).status);
}

async function flood(host, port, seconds) {
  const burst = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
  const held = [];
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    for (let i = 0; i < 200 && held.length < 3000; i++) {
      const s = net.connect(port, host);
      s.on("error", () => {});
      s.on("connect", () => { s.pause(); s.write(burst); });
      held.push(s);
    }
    await new Promise((r) => setTimeout(r, 100));
    for (let i = held.length - 1; i >= 0; i--) if (held[i].destroyed) held.splice(i, 1);
  }
  held.forEach((s) => s.destroy());
}

// COUNT queued deliveries of new jobs, CONCURRENCY at a time; prints each job id answered 200 as
// soon as it is (a caller may kill berthd meanwhile: the rest fail and are not printed).
async function burst(url, secret, count, concurrency, first, labels) {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const id = first + next++;
      const payload = example("workflow_job", "queued");
      payload.workflow_job.id = id;
      if (labels) payload.workflow_job.labels = labels.split(",");
      const r = await deliver(url, secret, "workflow_job", payload);
      if (r.status === 200) process.stdout.write(`${id}\n`);
    }
  }));
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === "send") {
  const [url, secret, event, action, ...rest] = args;
  const opt = {};
  for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^--/, "")] = rest[i + 1];
  const payload = example(event, action === "-" ? null : action, Number(opt.example || 0));
  if (payload.workflow_job) {
    if (opt.id) payload.workflow_job.id = Number(opt.id);
    if (opt.runner) payload.workflow_job.runner_name = opt.runner;
    if (opt.labels) payload.workflow_job.labels = opt.labels.split(",");
  }
  const r = await deliver(url, secret, event, payload, opt.delivery);
  console.log(`${r.status} ${r.body}`);
} else if (cmd === "refusals") {
  await refusals(args[0], args[1]);
} else if (cmd === "flood") {
  await flood(args[0], Number(args[1]), Number(args[2]));
} else if (cmd === "burst") {
  await burst(args[0], args[1], Number(args[2]), Number(args[3]), Number(args[4]), args[5]);
} else {
  console.error("usage: deliver.mjs send|refusals|flood|burst ...");
  process.exit(2);
}
