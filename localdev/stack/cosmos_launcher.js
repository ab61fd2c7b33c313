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
 *   4. Transactional batch as Cosmos DB documents it: every operation type (create, upsert,
 *      replace, delete, read, patch with filter predicate and if-match) in the partition the
 *      request names, all or nothing: on the first failing operation everything the batch
 *      wrote is undone, the failing operation reports its own status and every other one 424
 *      (the package supports only create and keeps what ran before a failure). At most 100
 *      operations.
 *   5. A patch's filter predicate is evaluated against that one item, as written (the package
 *      lower-cases it, so `c.updatedAt` never matches, and runs it over the whole container).
 *   6. Items larger than 2 MB (the UTF-8 length of their JSON) are refused with 413, as
 *      Cosmos DB refuses them (the package stores anything).
 *   7. Time to live: a container's `defaultTtl` (absent/null: off; -1: on, items do not expire
 *      by default; n: items expire n seconds after their last write) and an item's `ttl`
 *      (-1 or a positive number of seconds, applied only where the container has TTL on). An
 *      expired item is gone for reads, queries, writes and batches from the second it expires,
 *      as in Cosmos DB, where deletion happens in the background but expired items are never
 *      returned (the package ignores TTL).
 *
 *   8. With `--data-dir <dir>`, data survives a restart, as Azurite's blobs and the broker's
 *      messages do: every database, container (with its settings) and item, ETags and `_ts`
 *      included, is written to `<dir>/cosmos.json` (atomically: a temporary file renamed) a
 *      second after a write (longer for a big account: ten times the last save's duration) and
 *      when the process stops (SIGTERM, SIGINT), and read back at start. A kill -9 loses what
 *      changed since the last save.
 *
 *   9. Queries run in time linear in the container's size: the package's query compiler
 *      builds each FROM/JOIN row set with `reduce(($, x) => [...$, row], [])`, which copies the
 *      accumulator for every item (quadratic: a page of 100 over 50,000 items took 20 s). The
 *      compiled code appends to the accumulator instead; the rows and their order are the same.
 *
 * Known gaps left as they are (the app avoids them): OFFSET/LIMIT, GROUP BY and DISTINCT do not
 * parse; the change feed never shows new writes; no request units, 429s or stored procedures.
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

// ------------------------------------------------------------ linear-time queries (fix 9)

// The query package the server compiles queries with (resolved from the server's own folder,
// so it is the same module instance).
const queryTransformer = require(
  require.resolve("@zeit/cosmosdb-query/lib/transformer", {
    paths: [require("node:path").dirname(require.resolve(`${PACKAGE}/package.json`))],
  }),
);

function call(object, method, args) {
  return {
    type: "CallExpression",
    callee: {
      type: "MemberExpression",
      object,
      property: { type: "Identifier", name: method },
      computed: false,
    },
    arguments: args,
  };
}

/** `[...$, a, ...b]` as `($.push(a), b.forEach(($item) => $.push($item)), $)`: the reduce
 * accumulators the transformer spreads are fresh arrays of its own (`reduce(..., [])`), so
 * appending to them changes nothing else. */
function appendingAccumulators(node) {
  if (Array.isArray(node)) return node.map(appendingAccumulators);
  if (node === null || typeof node !== "object") return node;
  for (const key of Object.keys(node)) node[key] = appendingAccumulators(node[key]);
  const [first, ...rest] = node.type === "ArrayExpression" ? node.elements : [];
  const spreadsAccumulator =
    first &&
    first.type === "SpreadElement" &&
    first.argument.type === "Identifier" &&
    first.argument.name === "$";
  if (spreadsAccumulator) {
    // A spread element is appended item by item: spread call arguments have a length limit.
    const appends = rest.map((element) =>
      element.type === "SpreadElement"
        ? call(element.argument, "forEach", [
            {
              type: "ArrowFunctionExpression",
              params: [{ type: "Identifier", name: "$item" }],
              body: call({ type: "Identifier", name: "$" }, "push", [
                { type: "Identifier", name: "$item" },
              ]),
            },
          ])
        : call({ type: "Identifier", name: "$" }, "push", [element]),
    );
    const result = { type: "Identifier", name: "$" };
    return { type: "SequenceExpression", expressions: [...appends, result] };
  }
  return node;
}

const originalTransform = queryTransformer.default;
queryTransformer.default = (...args) => appendingAccumulators(originalTransform(...args));

// ------------------------------------------------------------------- item size and TTL (6, 7)

const MAX_ITEM_BYTES = 2 * 1024 * 1024;
const MAX_TTL_SECONDS = 2147483647;
const Documents = lib("account/documents").default;
const Items = lib("account/items").default;

function standInError(status, message, flag) {
  const err = new Error(message);
  err[flag] = true;
  err.statusCode = status;
  return err;
}

/** Refuse what Cosmos DB refuses before anything is stored (Items.replace deletes the old item
 * before it stores the new one, so checking afterwards could lose it). */
function checkItem(documents, data) {
  const bytes = Buffer.byteLength(JSON.stringify(data), "utf8");
  if (bytes > MAX_ITEM_BYTES) {
    throw standInError(
      413,
      `Request size is too large: the item is ${bytes} bytes, the limit is ${MAX_ITEM_BYTES}.`,
      "tooLarge",
    );
  }
  const definition = documents._parent.read();
  if (ttlEnabled(definition) && data.ttl !== undefined && !validItemTtl(data.ttl)) {
    throw standInError(
      400,
      "The value of 'ttl' must be -1 or a positive integer of at most 2147483647 seconds.",
      "badRequest",
    );
  }
}

function ttlEnabled(definition) {
  return Boolean(definition) && definition.defaultTtl !== undefined && definition.defaultTtl !== null;
}

function validItemTtl(ttl) {
  return ttl === -1 || (Number.isInteger(ttl) && ttl > 0 && ttl <= MAX_TTL_SECONDS);
}

/** The second (Unix time) from which `doc` is expired, or Infinity. */
function expiresAt(definition, doc) {
  if (!ttlEnabled(definition)) return Infinity;
  const ttl = doc.ttl !== undefined ? doc.ttl : definition.defaultTtl;
  if (ttl === -1 || !Number.isInteger(ttl) || ttl <= 0) return Infinity;
  return doc._ts + ttl;
}

for (const method of ["create", "replace"]) {
  const original = Items.prototype[method];
  Documents.prototype[method] = function checkedWrite(data, ...rest) {
    checkItem(this, data);
    return original.call(this, data, ...rest);
  };
}

/** Delete the collection's expired items. `_ts` and `ttl` are whole seconds, so an item can only
 * become expired when a new second begins: one sweep per second and collection is exact. */
function purgeExpired(collection) {
  const definition = collection.read();
  if (!ttlEnabled(definition)) return;
  const now = Math.floor(Date.now() / 1000);
  const documents = collection.documents;
  if (documents._purgedAt === now) return;
  documents._purgedAt = now;
  const expired = [];
  for (const item of documents._data.values()) {
    const doc = item.read();
    if (now >= expiresAt(definition, doc)) expired.push(doc);
  }
  for (const doc of expired) {
    Items.prototype.delete.call(documents, doc._rid, documents._getPartition(doc));
  }
}

function collectionOf(account, params) {
  if (!params || !params.dbId || !params.collId) return null;
  const database = account.database(params.dbId);
  if (!database || !database.read()) return null;
  const collection = database.collection(params.collId);
  return collection && collection.read() ? collection : null;
}

// ------------------------------------------------------------- patch filter predicate (fix 5)

const patchOperations = lib("handler/_patch-operations");
const originalPatchOperation = patchOperations.patchOperation;

/** True when the filter predicate (`FROM c WHERE ...`, as the SDKs send it) holds for `doc`. */
function predicateHolds(collection, condition, doc) {
  if (!/^\s*from\s/i.test(condition)) throw new Error("a filter predicate starts with FROM");
  const documents = collection.documents;
  const query = documents._getQuery(`SELECT * ${condition}`);
  return query.exec([doc], { udf: documents._userDefinedFunctions() }).result.length > 0;
}

patchOperations.patchOperation = (collection, input) => {
  if (!input.condition) return originalPatchOperation(collection, input);
  let partition;
  try {
    partition = parsePartitionKey(input.partitionKey, input.id);
  } catch (err) {
    return { statusCode: 400, body: { code: "BadRequest", message: err.message } };
  }
  const data = collection.document(input.id, partition).read();
  if (!data) return { statusCode: 404, body: { code: "NotFound", message: NOT_FOUND_MESSAGE } };
  if (input.ifMatch && input.ifMatch !== data._etag) return preconditionFailed();
  let holds;
  try {
    holds = predicateHolds(collection, input.condition, data);
  } catch (err) {
    return {
      statusCode: 400,
      body: { code: "BadRequest", message: `Invalid filter predicate: ${err.message}` },
    };
  }
  if (!holds) {
    return {
      statusCode: 412,
      body: {
        code: "PreconditionFailed",
        message: "Operation cannot be performed because one of the specified precondition is not met.",
      },
    };
  }
  return originalPatchOperation(collection, { ...input, condition: undefined });
};

function preconditionFailed() {
  return {
    statusCode: 412,
    body: {
      code: "PreconditionFailed",
      message: "Operation cannot be performed because one of the specified precondition is not met.",
    },
  };
}

// --------------------------------------------------------------- transactional batch (fix 4)

const documentOperations = lib("handler/_document-operations");
const readJson = lib("json").default;
const trueHeader = lib("true-header").default;
const MAX_BATCH_OPERATIONS = 100;

/** Record every change to the collection's maps so a failed batch can be undone exactly. */
function beginJournal(documents) {
  const log = [];
  const ridCount = documents._ridCount;
  const maps = [documents._data, documents._index];
  for (const map of maps) {
    map.set = (key, value) => {
      log.push([map, key, Map.prototype.has.call(map, key), Map.prototype.get.call(map, key)]);
      return Map.prototype.set.call(map, key, value);
    };
    map.delete = (key) => {
      log.push([map, key, Map.prototype.has.call(map, key), Map.prototype.get.call(map, key)]);
      return Map.prototype.delete.call(map, key);
    };
  }
  const end = () => {
    for (const map of maps) {
      delete map.set;
      delete map.delete;
    }
  };
  const rollback = () => {
    end();
    for (let i = log.length - 1; i >= 0; i -= 1) {
      const [map, key, had, value] = log[i];
      if (had) map.set(key, value);
      else map.delete(key);
    }
    documents._ridCount = ridCount;
  };
  return { end, rollback };
}

function runBatchOperation(collection, paths, values, rawPartition, op) {
  const type = op && typeof op.operationType === "string" ? op.operationType : "";
  const withPartition = { ...op, partitionKey: rawPartition };
  const body = op ? op.resourceBody : undefined;
  const needsBody = ["Create", "Upsert", "Replace"].includes(type);
  if (needsBody) {
    if (!body || typeof body !== "object" || Array.isArray(body)) {
      return { statusCode: 400, body: { code: "BadRequest", message: "missing resource body" } };
    }
    if (!inPartition(body, paths, values)) {
      return {
        statusCode: 400,
        body: {
          code: "BadRequest",
          message: "PartitionKey extracted from document doesn't match the one specified in the header.",
        },
      };
    }
  }
  switch (type) {
    case "Create":
      return documentOperations.createOperation(collection, withPartition);
    case "Upsert":
      return documentOperations.upsertOperation(collection, withPartition);
    case "Replace":
      if (op.id !== undefined && op.id !== body.id) {
        return { statusCode: 400, body: { code: "BadRequest", message: "replacing id is not allowed" } };
      }
      return documentOperations.replaceOperation(collection, withPartition);
    case "Read":
      return documentOperations.readOperation(collection, withPartition);
    case "Delete": {
      const result = documentOperations.deleteOperation(collection, withPartition);
      return result.statusCode === 404
        ? { statusCode: 404, body: { code: "NotFound", message: NOT_FOUND_MESSAGE } }
        : result;
    }
    case "Patch": {
      if (!body || !Array.isArray(body.operations)) {
        return { statusCode: 400, body: { code: "BadRequest", message: "missing patch operations" } };
      }
      const result = patchOperations.patchOperation(collection, {
        id: op.id,
        partitionKey: rawPartition,
        ifMatch: op.ifMatch,
        operations: body.operations,
        condition: body.condition,
      });
      return result.statusCode === 404
        ? { statusCode: 404, body: { code: "NotFound", message: NOT_FOUND_MESSAGE } }
        : result;
    }
    default:
      return {
        statusCode: 400,
        body: { code: "BadRequest", message: `Operation type '${type}' is not supported in Batch.` },
      };
  }
}

function errorResult(err) {
  if (err.tooLarge) return { statusCode: 413, body: { code: "RequestEntityTooLarge", message: err.message } };
  if (err.badRequest) return { statusCode: 400, body: { code: "BadRequest", message: err.message } };
  if (err.conflict) return { statusCode: 409, body: { code: "Conflict", message: err.message } };
  throw err;
}

patchHandler("batch-documents", (original) => async (account, req, res, params) => {
  if (!trueHeader(req, "x-ms-cosmos-batch-atomic")) return original(account, req, res, params);
  const collection = collectionOf(account, params);
  if (!collection) return notFound(res);
  let operations;
  try {
    operations = await readJson(req);
  } catch {
    res.statusCode = 400;
    return { code: "BadRequest", message: "The batch request body is not JSON." };
  }
  if (!Array.isArray(operations) || operations.length === 0) {
    res.statusCode = 400;
    return { code: "BadRequest", message: "A batch request needs at least one operation." };
  }
  if (operations.length > MAX_BATCH_OPERATIONS) {
    res.statusCode = 400;
    return {
      code: "BadRequest",
      message: `Batch request has more operations than what is supported (${MAX_BATCH_OPERATIONS}).`,
    };
  }
  const values = requestedPartition(req.headers);
  const header = req.headers[PARTITION_KEY_HEADER];
  const rawPartition = Array.isArray(header) ? header[0] : header;
  if (values === null) {
    res.statusCode = 400;
    return { code: "BadRequest", message: "A transactional batch needs a partition key." };
  }
  const definition = collection.read();
  const paths = (definition.partitionKey && definition.partitionKey.paths) || ["/id"];
  const journal = beginJournal(collection.documents);
  const results = [];
  let failedAt = -1;
  try {
    for (let i = 0; i < operations.length; i += 1) {
      let result;
      try {
        result = runBatchOperation(collection, paths, values, rawPartition, operations[i]);
      } catch (err) {
        result = errorResult(err);
      }
      results.push(result);
      if (result.statusCode >= 400) {
        failedAt = i;
        break;
      }
    }
  } catch (err) {
    journal.rollback();
    throw err;
  }
  if (failedAt >= 0) {
    journal.rollback();
    // As Cosmos DB answers a failed atomic batch: 207 with the failing operation's own status
    // (and message) and 424 Failed Dependency for every other operation.
    res.statusCode = 207;
    return operations.map((_, i) =>
      i === failedAt
        ? {
            statusCode: results[i].statusCode,
            requestCharge: 0,
            resourceBody: results[i].body,
          }
        : { statusCode: 424, requestCharge: 0 },
    );
  }
  journal.end();
  res.statusCode = 200;
  return results.map((result) => ({
    statusCode: result.statusCode,
    requestCharge: 1,
    eTag: result.body ? result.body._etag : undefined,
    resourceBody: result.body,
  }));
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
    // Fix 7: expired items are gone before any handler looks at the collection.
    const collection = collectionOf(account, params);
    if (collection) purgeExpired(collection);
    // Fix 8: anything but a read or a query may have changed something worth keeping.
    if (req.method !== "GET" && !isQuery(req)) persistence.changed();
    let body;
    try {
      body = await original(account, req, res, params);
    } catch (err) {
      // Fix 6 (and an invalid ttl) from a single-item write.
      if (!err.tooLarge && !err.badRequest) throw err;
      res.statusCode = err.statusCode;
      return { code: err.tooLarge ? "RequestEntityTooLarge" : "BadRequest", message: err.message };
    }
    if (res.statusCode < 400) return body;
    if (res.statusCode === 404 && (!body || !body.code)) return notFound(res);
    const shaped = body && typeof body === "object" ? body : {};
    shaped.code = shaped.code || ERROR_CODES[res.statusCode] || "Error";
    shaped.message = shaped.message || shaped.code;
    return shaped;
  });
}

// ------------------------------------------------------------------ persistence (fix 8)

function isQuery(req) {
  return (
    trueHeader(req, "x-ms-documentdb-isquery") ||
    req.headers["content-type"] === "application/query+json"
  );
}

const fs = require("node:fs");
const nodePath = require("node:path");
const SAVE_DELAY_MS = 1000;

/** Everything the account holds, as plain JSON (items keep their system properties). */
function snapshot(account) {
  const databases = [];
  for (const database of account.databases._data.values()) {
    const collections = [];
    for (const collection of database.collections._data.values()) {
      collections.push({
        definition: collection.read(),
        ridCount: collection.documents._ridCount,
        documents: [...collection.documents._data.values()].map((item) => item.read()),
      });
    }
    databases.push({
      definition: database.read(),
      ridCount: database.collections._ridCount,
      collections,
    });
  }
  return { version: 1, ridCount: account.databases._ridCount, databases };
}

/** Put a snapshot back through the package's own stores (its indexes are rebuilt by _set). */
function restore(account, state) {
  account.databases._ridCount = state.ridCount;
  for (const saved of state.databases) {
    account.databases._set(saved.definition);
    const database = account.database(saved.definition.id);
    database.collections._ridCount = saved.ridCount;
    for (const container of saved.collections) {
      database.collections._set(container.definition);
      const collection = database.collection(container.definition.id);
      collection.documents._ridCount = container.ridCount;
      for (const document of container.documents) collection.documents._set(document);
    }
  }
}

const persistence = {
  file: null,
  account: null,
  timer: null,
  lastSaveMs: 0,
  changed() {
    if (!this.file || this.timer) return;
    // A big account takes a while to write: wait ten times as long as the last save took, so
    // saving never costs more than about a tenth of the stand-in's time.
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.save();
      },
      Math.max(SAVE_DELAY_MS, 10 * this.lastSaveMs),
    );
  },
  save() {
    if (!this.file || !this.account) return;
    const began = Date.now();
    const temporary = `${this.file}.tmp`;
    fs.writeFileSync(temporary, JSON.stringify(snapshot(this.account)));
    fs.renameSync(temporary, this.file);
    this.lastSaveMs = Date.now() - began;
  },
  load(account) {
    this.account = account;
    if (!this.file || !fs.existsSync(this.file)) return;
    restore(account, JSON.parse(fs.readFileSync(this.file, "utf8")));
  },
};

// The package makes its account when the server starts listening (lib/index.js); a subclass
// hands it to the persistence as it is made.
const accountModule = lib("account");
const PackageAccount = accountModule.default;
accountModule.default = class PersistentAccount extends PackageAccount {
  constructor(...args) {
    super(...args);
    persistence.load(this);
  }
};

// Only now load the server: this requires lib/routes.js, which picks up the patched handlers.
const { createHttpsServer } = require(PACKAGE);

const { values: args } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "8081" },
    "data-dir": { type: "string" },
  },
});
if (args["data-dir"]) {
  fs.mkdirSync(args["data-dir"], { recursive: true });
  persistence.file = nodePath.join(args["data-dir"], "cosmos.json");
}
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
  if (persistence.timer) clearTimeout(persistence.timer);
  persistence.timer = null;
  try {
    persistence.save();
  } catch (err) {
    console.error(`cosmos launcher: could not save ${persistence.file}: ${err.message}`);
  }
  server.close(() => process.exit(0));
  // The package answers with "connection: close", but an idle client socket may still be open.
  server.closeAllConnections();
}
process.once("SIGTERM", () => shutdown("SIGTERM"));
process.once("SIGINT", () => shutdown("SIGINT"));
