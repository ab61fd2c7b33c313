// The local OpenID Connect issuer: oauth2-mock-server (a real issuer: discovery, JWKS, RS256
// tokens signed with keys it generates), with the token contract Orderflow's tests and scripts
// rely on (docs/SECURITY.md):
//
//   POST /token, form-encoded, grant_type=client_credentials, client_id=<any>
//   optional fields copied into the claims: sub, scp (space-separated string), roles
//   (space-separated -> JSON array), aud (default: --audience), expires_in (seconds from now,
//   negative allowed).
//
// Keys are kept in <data-dir>/keys.json, so a restarted issuer (an outage in a test) publishes
// the same keys. Key rotation, for tests: SIGUSR1 generates a new key and signs with it from then
// on (the old key stays in the JWKS); SIGUSR2 removes every key but the current one from the JWKS.
//
//   node issuer.mjs --host 127.0.0.1 --port 8091 --issuer http://127.0.0.1:8091 \
//     --audience api://orderflow-local --data-dir .localdev/identity

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { OAuth2Server } from "oauth2-mock-server";

const { values: args } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "8091" },
    issuer: { type: "string" },
    audience: { type: "string" },
    "data-dir": { type: "string" },
  },
});
for (const required of ["issuer", "audience", "data-dir"]) {
  if (!args[required]) {
    console.error(`--${required} is required`);
    process.exit(2);
  }
}

const DEFAULT_CLIENT = "orderflow-local-client";
const MAX_LIFETIME_SECONDS = 24 * 3600;
const dataDir = args["data-dir"];
const keyFile = join(dataDir, "keys.json");
mkdirSync(dataDir, { recursive: true });

const server = new OAuth2Server();
const store = server.issuer.keys;
let state = { current: null, retired: [] };

function save() {
  const temporary = `${keyFile}.tmp`;
  const body = { ...state, keys: store.toJSON(true) };
  writeFileSync(temporary, JSON.stringify(body), { mode: 0o600 });
  renameSync(temporary, keyFile);
}

async function newCurrentKey() {
  const jwk = await store.generate("RS256");
  state.current = jwk.kid;
  save();
  return jwk.kid;
}

if (existsSync(keyFile)) {
  const saved = JSON.parse(readFileSync(keyFile, "utf8"));
  for (const jwk of saved.keys) await store.add(jwk);
  state = { current: saved.current, retired: saved.retired ?? [] };
} else {
  await newCurrentKey();
}

// Sign with the current key (the library would take its keys round-robin) and publish only
// keys that were not retired.
const nextKey = store.get.bind(store);
store.get = (kid) => nextKey(kid ?? state.current);
const allKeys = store.toJSON.bind(store);
store.toJSON = (includePrivateFields = false) =>
  allKeys(includePrivateFields).filter(
    (jwk) => includePrivateFields || !state.retired.includes(jwk.kid),
  );

function formField(req, name) {
  const value = req.body?.[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

function lifetime(req) {
  const raw = formField(req, "expires_in");
  if (raw === undefined) return undefined;
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || Math.abs(seconds) > MAX_LIFETIME_SECONDS) {
    throw new Error(`expires_in must be an integer of at most ${MAX_LIFETIME_SECONDS} seconds`);
  }
  return seconds;
}

server.service.on("beforeTokenSigning", (token, req) => {
  const payload = token.payload;
  const clientId = formField(req, "client_id") ?? DEFAULT_CLIENT;
  payload.aud = formField(req, "aud") ?? args.audience;
  payload.sub = formField(req, "sub") ?? clientId;
  payload.azp = clientId;
  const scp = formField(req, "scp");
  if (scp !== undefined) payload.scp = scp;
  const roles = formField(req, "roles");
  if (roles !== undefined) payload.roles = roles.split(/\s+/).filter(Boolean);
  const seconds = lifetime(req);
  if (seconds !== undefined) payload.exp = payload.iat + seconds;
  if (payload.scope === undefined) delete payload.scope;
});

server.service.on("beforeResponse", (response, req) => {
  const seconds = lifetime(req);
  if (seconds !== undefined) response.body.expires_in = seconds;
});

process.on("SIGUSR1", async () => {
  const previous = state.current;
  const kid = await newCurrentKey();
  console.log(`rotated signing key ${previous} -> ${kid}`);
});
process.on("SIGUSR2", () => {
  const retired = store.toJSON(true).map((jwk) => jwk.kid).filter((kid) => kid !== state.current);
  state.retired = [...new Set([...state.retired, ...retired])];
  save();
  console.log(`retired signing keys ${retired.join(",") || "(none)"}; current ${state.current}`);
});

async function stop() {
  await server.stop();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

await server.start(Number(args.port), args.host);
server.issuer.url = args.issuer; // `iss` and discovery must name the configured issuer
console.log(`issuer ${args.issuer} listening on http://${args.host}:${args.port} (kid ${state.current})`);
