#!/usr/bin/env node
/*
 * Cosmos DB stand-in for the local stack: @vercel/cosmosdb-server 1.0.1 plus the fixes Orderflow
 * needs, applied by replacing handler exports *before* the package's router module is loaded
 * (lib/routes.js captures each handler's `default` export once, when it is first required).
 *
 *   node localdev/stack/cosmos_launcher.js [--host 127.0.0.1] [--port 8081]
 *
 * Fixes:
 *   1. A read of a missing item answers 404 NotFound (the package throws a TypeError -> 500).
 *   2. A query sent with `x-ms-documentdb-partitionkey` sees only that partition's items (the
 *      package ignores the header and returns every partition's rows).
 *   3. Every error answer carries a Cosmos-shaped body `{"code", "message"}` (the package often
 *      answers `{}`), so a missing database or container reads as a proper 404 NotFound.
 *
 * Known gaps left as they are (the app avoids them): OFFSET/LIMIT, GROUP BY and DISTINCT do not
 * parse; transactional batch supports only create and is not atomic; the change feed never shows
 * new writes; no TTL expiry, request units, 429s or stored procedures. Data lives in memory only.
 *
 * The fixes depend on the package's internals, so the exact version is checked at startup.
 */
"use strict";

const { parseArgs } = require("node:util");

const PACKAGE = "@vercel/cosmosdb-server";
const SUPPORTED_VERSION = "1.0.1";

const installedVersion = require(`${PACKAGE}/package.json`).version;
if (installedVersion !== SUPPORTED_VERSION) {
  console.error(
    `cosmos launcher: ${PACKAGE} ${installedVersion} is installed, but its fixes are written ` +
      `for ${SUPPORTED_VERSION}; run scripts/bootstrap.sh (or revisit the fixes for the new version)`,
  );
  process.exit(2);
}

const lib = (path) => require(`${PACKAGE}/lib/${path}`);
const getValue = lib("utils/get-value").default;
const { parsePartitionKey } = lib("utils/get-partition-from-header");

const PARTITION_KEY_HEADER = "x-ms-documentdb-partitionkey";
const CROSS_PARTITION_HEADER = "x-ms-documentdb-query-enablecrosspartition";

// Status -> Cosmos error code, as the service names them in error bodies.
const ERROR_CODES = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  405: "MethodNotAllowed",
  409: "Conflict",
  412: "PreconditionFailed",
  413: "RequestEntityTooLarge",
  429: "TooManyRequests",
  500: "InternalServerError",
};
const NOT_FOUND_MESSAGE =
  'Message: {"Errors":["Resource Not Found. Learn more: https://aka.ms/cosmosdb-tsg-not-found"]}';

function notFound(res) {
  res.statusCode = 404;
  return { code: "NotFound", message: NOT_FOUND_MESSAGE };
}

/** Replace the `default` export of lib/handler/<name>.js with `wrap(original)`. */
function patchHandler(name, wrap) {
  const handlerModule = lib(`handler/${name}`);
  handlerModule.default = wrap(handlerModule.default);
}

/** The partition key values the SDK sent, or null when the request is not partition-scoped.
 * `[{}]` is what the SDKs send for "no partition key", so it is not a scope. */
function requestedPartition(headers) {
  const raw = headers[PARTITION_KEY_HEADER];
  if (!raw || raw === "[{}]") return null;
  try {
    const values = JSON.parse(Array.isArray(raw) ? raw[0] : raw);
    return Array.isArray(values) ? values : [values];
  } catch {
    return null;
  }
}

function isNoneValue(value) {
  return value !== null && typeof value === "object" && Object.keys(value).length === 0;
}

/** True when `doc` lies in the (possibly hierarchical, possibly prefix) partition `values`. */
function inPartition(doc, paths, values) {
  return values.every((expected, i) => {
    const actual = getValue(paths[i].slice(1).split("/"), doc);
    return isNoneValue(expected) ? actual === undefined : actual === expected;
  });
}

// Fix 1: look the item up the way the package does and answer 404 when it is not there, before
// the original handler dereferences it.
patchHandler("read-document", (original) => async (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  if (!collection.read()) return notFound(res);
  const header = req.headers[PARTITION_KEY_HEADER];
  if (header !== undefined) {
    let partition;
    try {
      partition = parsePartitionKey(Array.isArray(header) ? header[0] : header, params.docId);
    } catch (err) {
      res.statusCode = 400;
      return { code: "BadRequest", message: err.message };
    }
    if (!collection.document(params.docId, partition).read()) return notFound(res);
  }
  return original(account, req, res, params);
});

// Fix 2: run the package's own query handler against a view of the collection that holds only
// the requested partition's items. The view shares everything else (query cache, UDFs, indexes)
// through the prototype chain.
patchHandler("query-documents", (original) => async (account, req, res, params) => {
  const values = requestedPartition(req.headers);
  if (values === null) return original(account, req, res, params);
  const collection = account.database(params.dbId).collection(params.collId);
  const definition = collection.read();
  if (!definition) return notFound(res);
  const paths = (definition.partitionKey && definition.partitionKey.paths) || ["/id"];
  const scopedItems = new Map(
    [...collection.documents._data].filter(([, item]) => inPartition(item.read(), paths, values)),
  );
  const scopedDocuments = Object.create(collection.documents, { _data: { value: scopedItems } });
  const scopedCollection = Object.create(collection, { documents: { value: scopedDocuments } });
  const scopedAccount = { database: () => ({ collection: () => scopedCollection }) };
  // The header already scopes the query, so the package's "WHERE must name the partition key"
  // check for single-partition queries does not apply.
  req.headers[CROSS_PARTITION_HEADER] = "true";
  return original(scopedAccount, req, res, params);
});

// Fix 3: give every error answer a Cosmos-shaped body. Applied to every handler module, after
// the specific fixes so it wraps them too.
const handlerDir = require("node:path").join(
  require.resolve(`${PACKAGE}/package.json`),
  "..",
  "lib",
  "handler",
);
for (const file of require("node:fs").readdirSync(handlerDir)) {
  if (!file.endsWith(".js") || file.startsWith("_")) continue;
  patchHandler(file.slice(0, -3), (original) => async (account, req, res, params) => {
    const body = await original(account, req, res, params);
    if (res.statusCode < 400) return body;
    if (res.statusCode === 404 && (!body || !body.code)) return notFound(res);
    const shaped = body && typeof body === "object" ? body : {};
    shaped.code = shaped.code || ERROR_CODES[res.statusCode] || "Error";
    shaped.message = shaped.message || shaped.code;
    return shaped;
  });
}

// Only now load the server: this requires lib/routes.js, which picks up the patched handlers.
const { createHttpsServer } = require(PACKAGE);

const { values: args } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "8081" },
  },
});
const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`cosmos launcher: invalid --port ${args.port}`);
  process.exit(2);
}

// Keep connections open: with the package's default ("connection: close") every request pays a
// new TLS handshake (~30 ms here), which dominated the cost of bulk work such as the expiry timer.
const server = createHttpsServer({ keepAlive: true });
server.keepAliveTimeout = 30_000;
server.on("error", (err) => {
  console.error(`cosmos launcher: cannot listen on ${args.host}:${port}: ${err.message}`);
  process.exit(1);
});
server.listen(port, args.host, () => {
  const address = server.address();
  console.log(
    `cosmos stand-in (${PACKAGE} ${installedVersion}) listening on https://${address.address}:${address.port}/`,
  );
});

function shutdown(signal) {
  console.log(`cosmos launcher: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  // The package answers with "connection: close", but an idle client socket may still be open.
  server.closeAllConnections();
}
process.once("SIGTERM", () => shutdown("SIGTERM"));
process.once("SIGINT", () => shutdown("SIGINT"));
