// Preloaded into the BIDS validator (node --require) by tests/test_export_bids.py. Covers both ways the validator's
// bundle may fetch: Node's global fetch (the path hed-validator 3.15's bundled cross-fetch takes) and https.request.
//
// The validator's HED checker (hed-validator) downloads the HED schemas it does not bundle (8.4.0, SCORE 2.1.0)
// from raw.githubusercontent.com/hed-standard/hed-schemas. The test machine reaches package registries, not
// GitHub, so this answers those requests, and only those, from a folder of the same published schema files
// (EPHYS_HED_SCHEMA_DIR: hedtools' bundled copies, hed/schema/schema_data/HED8.4.0.xml, HED_score_2.1.0.xml).
// A file that is not there answers 404, as GitHub would. Every other request goes to the network untouched.
"use strict";
const https = require("https");
const fs = require("fs");
const path = require("path");
const { Readable } = require("stream");
const { EventEmitter } = require("events");

const dir = process.env.EPHYS_HED_SCHEMA_DIR;
const original = https.request;

https.request = function request(options, ...rest) {
  const host = options && (options.hostname || options.host);
  const where = (options && options.path) || "";
  if (!dir || host !== "raw.githubusercontent.com" || !where.startsWith("/hed-standard/hed-schemas/")) {
    return original.call(this, options, ...rest);
  }
  const req = new EventEmitter();
  req.abort = req.destroy = () => {};
  req.setTimeout = () => req;
  req.write = () => true;
  req.end = () => {
    setImmediate(() => {
      const file = path.join(dir, path.basename(where.split("?")[0]));
      let body, status = 200;
      try {
        body = fs.readFileSync(file);
      } catch (err) {
        body = Buffer.from("404: Not Found");
        status = 404;
      }
      const res = Readable.from([body]);
      res.statusCode = status;
      res.statusMessage = status === 200 ? "OK" : "Not Found";
      res.headers = { "content-type": "text/plain; charset=utf-8", "content-length": String(body.length) };
      res.rawHeaders = [];
      req.emit("response", res);
    });
  };
  return req;
};

const originalFetch = globalThis.fetch;
function schemaFile(url) {
  const u = new URL(String(url && url.url ? url.url : url));
  if (!dir || u.hostname !== "raw.githubusercontent.com" || !u.pathname.startsWith("/hed-standard/hed-schemas/")) {
    return null;
  }
  return path.join(dir, path.basename(u.pathname));
}
if (originalFetch) {
  globalThis.fetch = async function fetch(url, init) {
    const file = schemaFile(url);
    if (file === null) {
      return originalFetch(url, init);
    }
    try {
      return new Response(fs.readFileSync(file), { status: 200, statusText: "OK" });
    } catch (err) {
      return new Response("404: Not Found", { status: 404, statusText: "Not Found" });
    }
  };
}
