// Webhook verification + enqueue over loopback: berthd's listener beside a Node server doing what
// an @octokit/webhooks user does (verify() from @octokit/webhooks-methods, JSON.parse, 202), the
// same signed workflow_job.queued bodies sent to each by the same load loop, in one run.
//   node webhook_load.mjs REPO BERTH_URL REQUESTS CONCURRENCY BERTHD_PID
//   node webhook_load.mjs template REPO OUT   the workflow_job.queued example, for the C++ client
//   node webhook_load.mjs serve REPO          the octokit peer alone; prints its port
// Prints one JSON line per server: requests/s, p50/p99 latency (ms), and CPU time per request
// (from /proc/PID/stat of berthd and of the peer, which runs as its own process).
import http from "node:http";
import { pathToFileURL } from "node:url";
import { createRequire } from "node:module";
import { fork } from "node:child_process";
import fs from "node:fs";

const [repo, berthUrl, total, concurrency, berthPid] = process.argv.slice(2);
const cpuMs = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const v = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(v[11]) + Number(v[12])) * 10;  // utime + stime, at 100 ticks/s
};
const root = repo === "peer" ? process.env.BERTH_REPO
  : repo === "template" || repo === "serve" ? process.argv[3] : repo;
const mods = `${root}/tests/webhook/node_modules/@octokit`;
const { sign, verify } = await import(pathToFileURL(`${mods}/webhooks-methods/dist-node/index.js`));
const examples = createRequire(`${root}/tests/webhook/package.json`)("@octokit/webhooks-examples");
const SECRET = "bench-secret";
const queued = examples.find((e) => e.name === "workflow_job").examples.find((e) => e.action === "queued");

async function bodies(n, base) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const p = structuredClone(queued);
    p.workflow_job.id = base + i;  // each one a new job: a real enqueue, no dedupe shortcut
    const body = JSON.stringify(p);
    out.push({ body, sig: await sign(SECRET, body), id: `bench-${base + i}` });
  }
  return out;
}

function peer() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks).toString();
        if (!(await verify(SECRET, body, req.headers["x-hub-signature-256"]))) {
          res.writeHead(401).end();
          return;
        }
        JSON.parse(body);
        res.writeHead(202, { "Content-Type": "application/json" }).end('{"result":"accepted"}');
      });
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function load(url, items, conc) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
  const lat = [];
  let next = 0;
  let bad = 0;
  const one = (item) => new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const req = http.request(url, { method: "POST", agent, headers: { "Content-Type": "application/json",
      "X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": item.id, "X-Hub-Signature-256": item.sig } }, (res) => {
      res.resume();
      res.on("end", () => {
        if (res.statusCode >= 300) bad++;
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
        resolve();
      });
    });
    req.on("error", () => { bad++; resolve(); });
    req.end(item.body);
  });
  const t0 = Date.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < items.length) await one(items[next++]);
  }));
  const secs = (Date.now() - t0) / 1000;
  agent.destroy();
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { requests: items.length, failed: bad, rps: Math.round(items.length / secs),
           p50_ms: +q(0.5).toFixed(3), p99_ms: +q(0.99).toFixed(3) };
}

if (repo === "template") {
  // The payload every request of the C++ client is made from (berth_bench_webhook_load).
  fs.writeFileSync(process.argv[4], JSON.stringify(queued));
} else if (repo === "serve") {
  // The octokit peer on its own, for the C++ client: prints its port, runs until killed.
  const server = await peer();
  console.log(server.address().port);
} else if (repo === "peer") {
  const server = await peer();
  process.send(server.address().port);
} else {
const n = Number(total), c = Number(concurrency);
const child = fork(new URL(import.meta.url).pathname, ["peer", "", "", "", ""], { env: { ...process.env, BERTH_REPO: process.argv[2] } });
const port = await new Promise((r) => child.once("message", r));
const peerUrl = `http://127.0.0.1:${port}/v1/webhooks/github`;
// Warm-up, then interleaved rounds so both see the same machine state.
await load(peerUrl, await bodies(200, 1e9), c);
await load(berthUrl, await bodies(200, 2e9), c);
const rounds = 3;
const results = { berthd: [], octokit_verify: [] };
const measured = async (pid, url, items) => {
  const before = cpuMs(pid);
  const mine = process.cpuUsage();
  const r = await load(url, items, c);
  r.cpu_us_per_request = Math.round(((cpuMs(pid) - before) * 1000) / items.length);
  const used = process.cpuUsage(mine);
  r.client_cpu_us_per_request = Math.round((used.user + used.system) / items.length);
  return r;
};
for (let r = 0; r < rounds; r++) {
  results.berthd.push(await measured(berthPid, berthUrl, await bodies(n, 3e9 + r * n)));
  results.octokit_verify.push(await measured(child.pid, peerUrl, await bodies(n, 4e9 + r * n)));
}
child.kill();
for (const [name, rs] of Object.entries(results)) {
  const med = (k) => rs.map((x) => x[k]).sort((a, b) => a - b)[Math.floor(rs.length / 2)];
  console.log(JSON.stringify({ server: name, requests: n, concurrency: c, failed: rs.reduce((a, x) => a + x.failed, 0),
    rps: med("rps"), p50_ms: med("p50_ms"), p99_ms: med("p99_ms"), cpu_us_per_request: med("cpu_us_per_request"),
    client_cpu_us_per_request: med("client_cpu_us_per_request") }));
}
}
