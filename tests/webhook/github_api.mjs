// A local stand-in for GitHub's REST API over HTTPS, for berthd's runner registration: it checks
// the GitHub App JWT (RS256 under the app's public key, iss, iat, exp <= 10 min), exchanges it for
// an installation token and answers generate-jitconfig as GitHub documents. MODE_FILE switches it
// to failing: 401 (every call), 422 (generate-jitconfig), timeout (generate-jitconfig never
// answers). Every request is logged as one JSON line to LOG_FILE.
//   node github_api.mjs PORT CERT KEY APP_PUBLIC_KEY MODE_FILE LOG_FILE
import https from "node:https";
import fs from "node:fs";
import crypto from "node:crypto";

const [port, cert, key, pub, modeFile, logFile] = process.argv.slice(2);
const publicKey = fs.readFileSync(pub);
const TOKEN = "ghs_berthtesttoken";
const mode = () => { try { return fs.readFileSync(modeFile, "utf8").trim(); } catch { return "ok"; } };
const log = (entry) => fs.appendFileSync(logFile, JSON.stringify(entry) + "\n");
const b64 = (s) => Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64");

function checkJwt(auth) {
  const m = /^Bearer (.+)\.(.+)\.(.+)$/.exec(auth || "");
  if (!m) return { ok: false, why: "no JWT" };
  const header = JSON.parse(b64(m[1]).toString());
  const claims = JSON.parse(b64(m[2]).toString());
  const signed = crypto.verify("RSA-SHA256", Buffer.from(`${m[1]}.${m[2]}`), publicKey, b64(m[3]));
  const now = Math.floor(Date.now() / 1000);
  const why = header.alg !== "RS256" ? "alg" : !signed ? "signature" : String(claims.iss) !== "4242" ? "iss"
    : claims.exp - claims.iat > 600 ? "exp more than 10 min after iat" : claims.iat > now + 5 ? "iat in the future"
    : claims.exp <= now ? "expired" : "";
  return { ok: !why, why, claims };
}

https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    const reply = (status, doc) => {
      log({ method: req.method, path: req.url, status, mode: mode(), body: body ? JSON.parse(body) : null, ...extra });
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(doc));
    };
    const extra = {};
    if (mode() === "401") return reply(401, { message: "Bad credentials" });
    if (req.method === "POST" && /^\/app\/installations\/\d+\/access_tokens$/.test(req.url)) {
      const jwt = checkJwt(req.headers.authorization);
      extra.jwt = jwt;
      if (!jwt.ok) return reply(401, { message: `A JSON web token could not be decoded (${jwt.why})` });
      return reply(201, { token: TOKEN, expires_at: new Date(Date.now() + 3600e3).toISOString() });
    }
    const jit = /^\/(repos\/[^/]+\/[^/]+|orgs\/[^/]+)\/actions\/runners\/generate-jitconfig$/.exec(req.url);
    if (req.method === "POST" && jit) {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return reply(401, { message: "Bad credentials" });
      if (mode() === "422") return reply(422, { message: "Validation Failed" });
      if (mode() === "timeout") { log({ path: req.url, mode: "timeout" }); return; }
      const r = JSON.parse(body);
      return reply(201, { runner: { id: 23, name: r.name, os: "linux", status: "offline", busy: false,
        labels: r.labels.map((l, i) => ({ id: i, name: l, type: "read-only" })) },
        encoded_jit_config: `JIT-${r.name}` });
    }
    reply(404, { message: "Not Found" });
  });
}).listen(Number(port), "127.0.0.1");
