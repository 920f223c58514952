/* socketspec interactive docs: the event catalogue and simulated WebSocket clients.
 *
 * Plain JavaScript, no framework and nothing loaded from anywhere but this server: the page
 * works offline. The server fills in where the WebSocket endpoint and the docs live
 * (window.SOCKETSPEC_DOCS, set by index.html); the events come from <docs_url>/schema.
 * The simulated clients are Clients of the browser client the package ships
 * (<docs_url>/static/socketspec.js, imported with the page's query): this file has no
 * protocol code of its own.
 */
(function () {
  "use strict";

  var root = document.documentElement;
  var CFG = window.SOCKETSPEC_DOCS || {
    wsPath: root.getAttribute("data-ws-path") || "/ws",
    docsUrl: root.getAttribute("data-docs-url") || "/socket-docs",
    token: "",
    query: ""
  };

  var CLOSE_CODES = {
    1000: "normal closure",
    1001: "server shutdown",
    1002: "protocol error",
    1005: "no status",
    1006: "connection lost",
    1007: "invalid UTF-8",
    1008: "policy violation",
    1009: "message too big",
    1011: "internal error",
    1013: "over capacity",
    4001: "authentication failed",
    4002: "token expired",
    4003: "session expired",
    4004: "idle timeout",
    4005: "heartbeat timeout",
    4008: "slow consumer"
  };
  var CLIENT_HUES = [234, 160, 24, 290, 190, 340, 100, 45];
  var LOG_LIMIT = 500;
  var CAPTURE_MS = 3000; // frames a client receives this long after a "Try it out" are its replies
  var NO_ACK_HINT_MS = 2000;
  var ACK_TIMEOUT_S = 30; // a call without an answer by then is given up (the client's TIMEOUT)

  var state = {
    schema: null,
    events: [],
    namespaces: ["/"],
    clients: [],
    nextClientId: 1,
    openTryPanels: new Set()
  };

  // ---------------------------------------------------------------------------------------
  // DOM helpers

  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "class") el.className = value;
        else if (key === "text") el.textContent = value;
        else if (key.slice(0, 2) === "on" && typeof value === "function") {
          el.addEventListener(key.slice(2), value);
        } else if (key === "testid") el.setAttribute("data-testid", value);
        else if (value === true) el.setAttribute(key, "");
        else el.setAttribute(key, String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) {
      child.forEach(function (c) { append(el, c); });
    } else if (child instanceof Node) {
      el.appendChild(child);
    } else {
      el.appendChild(document.createTextNode(String(child)));
    }
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  function $(id) {
    return document.getElementById(id);
  }

  function pretty(value) {
    try {
      return JSON.stringify(value, null, 2);
    } catch (err) {
      return String(value);
    }
  }

  // JSON laid out like a code formatter: a value that fits on one line stays on one line.
  function inline(value) {
    if (Array.isArray(value)) {
      return "[" + value.map(inline).join(", ") + "]";
    }
    if (value && typeof value === "object") {
      return "{" + Object.keys(value).map(function (k) {
        return JSON.stringify(k) + ": " + inline(value[k]);
      }).join(", ") + "}";
    }
    var text = JSON.stringify(value);
    return text === undefined ? "null" : text;
  }

  function formatJson(value, indent, width) {
    indent = indent || "";
    width = width || 56;
    var flat = inline(value);
    if (flat.length + indent.length <= width || !value || typeof value !== "object") return flat;
    var inner = indent + "  ";
    if (Array.isArray(value)) {
      if (!value.length) return "[]";
      return "[\n" + value.map(function (v) {
        return inner + formatJson(v, inner, width);
      }).join(",\n") + "\n" + indent + "]";
    }
    var keys = Object.keys(value);
    if (!keys.length) return "{}";
    return "{\n" + keys.map(function (k) {
      return inner + JSON.stringify(k) + ": " + formatJson(value[k], inner, width);
    }).join(",\n") + "\n" + indent + "}";
  }

  // What a log line shows under its header (which already names the event and the ack).
  function frameBody(frame) {
    var rest = {};
    var extra = false;
    Object.keys(frame).forEach(function (k) {
      if (k !== "event" && k !== "ack" && k !== "payload") {
        rest[k] = frame[k];
        extra = true;
      }
    });
    if (!extra) return formatJson(frame.payload === undefined ? {} : frame.payload);
    rest.payload = frame.payload;
    return formatJson(rest);
  }

  function clone(value) {
    return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  }

  function pad(n, width) {
    var s = String(n);
    while (s.length < width) s = "0" + s;
    return s;
  }

  function clock(date) {
    return pad(date.getHours(), 2) + ":" + pad(date.getMinutes(), 2) + ":" +
      pad(date.getSeconds(), 2) + "." + pad(date.getMilliseconds(), 3);
  }

  function bytes(n) {
    return n < 1024 ? n + " B" : (n / 1024).toFixed(1) + " KiB";
  }

  function withQuery(url) {
    return url + CFG.query;
  }

  function isSystemEvent(name) {
    return typeof name === "string" && name.slice(0, 2) === "__" && name.slice(-2) === "__";
  }

  // ---------------------------------------------------------------------------------------
  // JSON Schema: resolving, describing, and generating an example

  function pointer(doc, ref) {
    if (typeof ref !== "string" || ref.charAt(0) !== "#") return null;
    var parts = ref.slice(1).split("/").filter(Boolean);
    var cur = doc;
    for (var i = 0; i < parts.length; i++) {
      var part = decodeURIComponent(parts[i]).replace(/~1/g, "/").replace(/~0/g, "~");
      if (!cur || typeof cur !== "object") return null;
      cur = cur[part];
    }
    return cur || null;
  }

  function resolve(schema, doc) {
    var s = schema;
    var guard = 0;
    while (s && typeof s === "object" && s.$ref && guard++ < 32) {
      var target = pointer(doc, s.$ref);
      if (!target) break;
      var merged = Object.assign({}, target);
      Object.keys(s).forEach(function (k) {
        if (k !== "$ref") merged[k] = s[k];
      });
      merged.__refName = s.$ref.split("/").pop();
      s = merged;
    }
    return s && typeof s === "object" ? s : {};
  }

  function variantsOf(s) {
    return s.anyOf || s.oneOf || null;
  }

  function isNullSchema(s, doc) {
    return resolve(s, doc).type === "null";
  }

  function typeLabel(schema, doc, depth) {
    depth = depth || 0;
    var s = resolve(schema, doc);
    if (depth > 6) return "…";
    if (s.const !== undefined) return "const";
    var variants = variantsOf(s);
    if (variants) {
      return variants.map(function (v) { return typeLabel(v, doc, depth + 1); }).join(" | ");
    }
    if (s.allOf && s.allOf.length === 1) return typeLabel(s.allOf[0], doc, depth + 1);
    var type = s.type;
    if (Array.isArray(type)) return type.join(" | ");
    if (!type) type = s.properties ? "object" : s.items ? "array" : s.enum ? "enum" : "any";
    if (type === "array") {
      var items = s.items ? typeLabel(s.items, doc, depth + 1) : "any";
      return "array<" + items + ">";
    }
    if (type === "object") {
      var name = s.__refName || s.title;
      if (s.properties && name) return "object (" + name + ")";
      if (s.additionalProperties && typeof s.additionalProperties === "object") {
        return "object<string, " + typeLabel(s.additionalProperties, doc, depth + 1) + ">";
      }
      return "object";
    }
    if (s.format) return type + " (" + s.format + ")";
    return type;
  }

  function constraintsOf(schema, doc) {
    var s = resolve(schema, doc);
    var out = [];
    var variants = variantsOf(s);
    if (variants) {
      variants.forEach(function (v) {
        if (!isNullSchema(v, doc)) out = out.concat(constraintsOf(v, doc));
      });
    }
    function add(label, value) {
      out.push(label + (value === undefined ? "" : " " + value));
    }
    if (s.minLength !== undefined) add("min length", s.minLength);
    if (s.maxLength !== undefined) add("max length", s.maxLength);
    if (s.pattern !== undefined) add("pattern", s.pattern);
    if (s.minimum !== undefined) add("≥", s.minimum);
    if (s.exclusiveMinimum !== undefined) add(">", s.exclusiveMinimum);
    if (s.maximum !== undefined) add("≤", s.maximum);
    if (s.exclusiveMaximum !== undefined) add("<", s.exclusiveMaximum);
    if (s.multipleOf !== undefined) add("multiple of", s.multipleOf);
    if (s.minItems !== undefined) add("min items", s.minItems);
    if (s.maxItems !== undefined) add("max items", s.maxItems);
    if (s.uniqueItems) add("unique items");
    if (s.minProperties !== undefined) add("min properties", s.minProperties);
    if (s.maxProperties !== undefined) add("max properties", s.maxProperties);
    if (Array.isArray(s.enum)) add("one of", s.enum.map(function (v) { return JSON.stringify(v); }).join(", "));
    if (s.const !== undefined) add("=", JSON.stringify(s.const));
    if (s.default !== undefined) add("default", JSON.stringify(s.default));
    if (s.deprecated) add("deprecated");
    return out;
  }

  function objectPart(schema, doc) {
    // The object schema inside an Optional[...] or a single allOf, if there is one.
    var s = resolve(schema, doc);
    var variants = variantsOf(s);
    if (variants) {
      var real = variants.filter(function (v) { return !isNullSchema(v, doc); });
      if (real.length === 1) return objectPart(real[0], doc);
      return null;
    }
    if (s.allOf && s.allOf.length === 1) return objectPart(s.allOf[0], doc);
    if (s.properties) return s;
    return null;
  }

  function schemaRows(schema, doc, prefix, depth, rows) {
    var s = objectPart(schema, doc);
    if (!s || depth > 4) return rows;
    var required = new Set(s.required || []);
    Object.keys(s.properties || {}).forEach(function (key) {
      var prop = s.properties[key];
      var resolved = resolve(prop, doc);
      rows.push({
        name: prefix + key,
        depth: depth,
        type: typeLabel(prop, doc),
        required: required.has(key),
        constraints: constraintsOf(prop, doc),
        description: resolved.description || ""
      });
      if (objectPart(prop, doc)) {
        schemaRows(prop, doc, prefix + key + ".", depth + 1, rows);
      } else if (resolved.type === "array" && resolved.items && objectPart(resolved.items, doc)) {
        schemaRows(resolved.items, doc, prefix + key + "[].", depth + 1, rows);
      }
    });
    return rows;
  }

  function schemaTable(schema, testid) {
    if (!schema) {
      return h("p", { class: "muted", testid: testid }, "Any JSON object (no schema).");
    }
    var rows = schemaRows(schema, schema, "", 0, []);
    if (!rows.length) {
      var s = resolve(schema, schema);
      if (s.type === "object" || s.properties) {
        return h("p", { class: "muted", testid: testid }, "An empty object: no fields.");
      }
      return h("div", { testid: testid },
        h("p", { class: "muted" }, "Type: ", h("code", { text: typeLabel(schema, schema) })));
    }
    var withConstraints = rows.some(function (row) { return row.constraints.length; });
    var withDescription = rows.some(function (row) { return row.description; });
    return h("table", { class: "schema-table", testid: testid },
      h("thead", null, h("tr", null,
        h("th", { text: "Name" }), h("th", { text: "Type" }), h("th", { text: "Required" }),
        withConstraints ? h("th", { text: "Constraints" }) : null,
        withDescription ? h("th", { text: "Description" }) : null)),
      h("tbody", null, rows.map(function (row) {
        return h("tr", { "data-field": row.name },
          h("td", { class: "field-name", style: "padding-left:" + (10 + row.depth * 14) + "px" },
            h("code", { text: row.name })),
          h("td", null, h("span", { class: "type", text: row.type })),
          h("td", { class: "req" }, row.required
            ? h("span", { class: "required", title: "required", text: "✓ required" })
            : h("span", { class: "optional", text: "optional" })),
          withConstraints ? h("td", null, row.constraints.map(function (c) {
            return h("span", { class: "chip", text: c });
          })) : null,
          withDescription ? h("td", { class: "field-desc", text: row.description }) : null);
      })));
  }

  function exampleNumber(s, integer) {
    var lo = s.minimum;
    if (lo === undefined && typeof s.exclusiveMinimum === "number") {
      lo = s.exclusiveMinimum + (integer ? 1 : 0.5);
    }
    var hi = s.maximum;
    if (hi === undefined && typeof s.exclusiveMaximum === "number") {
      hi = s.exclusiveMaximum - (integer ? 1 : 0.5);
    }
    var v = lo !== undefined ? lo : 0;
    if (hi !== undefined && v > hi) v = hi;
    if (integer) v = Math.ceil(v);
    if (typeof s.multipleOf === "number" && s.multipleOf > 0) {
      v = Math.ceil(v / s.multipleOf) * s.multipleOf;
    }
    return v;
  }

  // A string matching a regular expression, for the common subset schemas use: literals,
  // escapes (\d \w \s), classes with ranges, groups with alternatives (the first is taken),
  // anchors and quantifiers. Returns null for anything else.
  function sampleForPattern(pattern, minLength) {
    var i = 0;
    var CLASS_ESCAPES = { d: "0123456789", w: "abcdefghijklmnopqrstuvwxyz0123456789_", s: " " };
    function fail() { throw new Error("unsupported pattern"); }
    function escapeChars(c) {
      if (CLASS_ESCAPES[c]) return CLASS_ESCAPES[c];
      if (c === "D" || c === "W" || c === "S" || c === "b" || c === "B") fail();
      return c === "n" ? "\n" : c === "t" ? "\t" : c;
    }
    function parseClass() {
      // after "["
      var negate = pattern.charAt(i) === "^";
      if (negate) i++;
      var chars = "";
      var first = true;
      while (i < pattern.length && (pattern.charAt(i) !== "]" || first)) {
        first = false;
        var c = pattern.charAt(i++);
        var set = c;
        if (c === "\\") set = escapeChars(pattern.charAt(i++));
        if (set.length === 1 && pattern.charAt(i) === "-" && pattern.charAt(i + 1) !== "]" &&
            i + 1 < pattern.length) {
          var end = pattern.charAt(i + 1);
          if (end === "\\") fail();
          i += 2;
          for (var code = set.charCodeAt(0); code <= end.charCodeAt(0) && chars.length < 200; code++) {
            chars += String.fromCharCode(code);
          }
        } else {
          chars += set;
        }
      }
      if (pattern.charAt(i) !== "]") fail();
      i++;
      if (negate) {
        var pool = "abcxyz012_ ";
        var allowed = "";
        for (var k = 0; k < pool.length; k++) if (chars.indexOf(pool.charAt(k)) < 0) allowed += pool.charAt(k);
        if (!allowed) fail();
        return allowed;
      }
      return chars;
    }
    function parseQuantifier(node) {
      var c = pattern.charAt(i);
      node.min = 1;
      node.max = 1;
      if (c === "*") { node.min = 0; node.max = Infinity; i++; }
      else if (c === "+") { node.min = 1; node.max = Infinity; i++; }
      else if (c === "?") { node.min = 0; node.max = 1; i++; }
      else if (c === "{") {
        var m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i));
        if (!m) fail();
        node.min = parseInt(m[1], 10);
        node.max = m[2] === undefined ? node.min : m[3] === "" ? Infinity : parseInt(m[3], 10);
        i += m[0].length;
      }
      if (pattern.charAt(i) === "?" || pattern.charAt(i) === "+") i++; // lazy / possessive
      return node;
    }
    function parseSequence() {
      var seq = [];
      while (i < pattern.length) {
        var c = pattern.charAt(i);
        if (c === ")" || c === "|") break;
        i++;
        var node;
        if (c === "^" || c === "$") continue;
        if (c === "[") node = { chars: parseClass() };
        else if (c === "(") {
          if (pattern.charAt(i) === "?") {
            if (pattern.charAt(i + 1) === ":") i += 2;
            else fail();
          }
          var alts = [parseSequence()];
          while (pattern.charAt(i) === "|") {
            i++;
            alts.push(parseSequence());
          }
          if (pattern.charAt(i) !== ")") fail();
          i++;
          node = { group: alts[0] };
        } else if (c === "\\") node = { chars: escapeChars(pattern.charAt(i++)) };
        else if (c === ".") node = { chars: "abcdefghijklmnopqrstuvwxyz" };
        else node = { chars: c };
        seq.push(parseQuantifier(node));
      }
      return seq;
    }
    function render(seq) {
      return seq.map(function (node) {
        var out = "";
        for (var r = 0; r < node.count; r++) {
          out += node.group ? render(node.group) : node.chars.charAt((node.offset + r) % node.chars.length);
        }
        return out;
      }).join("");
    }
    function prepare(seq) {
      seq.forEach(function (node) {
        node.count = node.min;
        node.offset = 0;
        if (node.group) prepare(node.group);
      });
    }
    try {
      var seq = parseSequence();
      if (i < pattern.length) {
        // top-level alternatives: take the first
        if (pattern.charAt(i) !== "|") fail();
      }
      prepare(seq);
      // An optional or repeated part appears once, so the sample shows its shape.
      seq.forEach(function (node) { if (node.count === 0 && node.max > 0) node.count = 1; });
      var value = render(seq);
      var growable = seq.filter(function (node) { return node.max === Infinity && !node.group; });
      var guard = 0;
      while (value.length < minLength && growable.length && guard++ < 1000) {
        growable[0].count += 1;
        value = render(seq);
      }
      return value;
    } catch (err) {
      return null;
    }
  }

  function exampleString(s, key) {
    var now = new Date();
    var formats = {
      "date-time": now.toISOString(),
      date: now.toISOString().slice(0, 10),
      time: now.toISOString().slice(11, 19),
      email: "user@example.com",
      uri: window.location.origin + "/",
      url: window.location.origin + "/",
      uuid: "3fa85f64-5717-4562-b3fc-2c963f66afa6",
      ipv4: "127.0.0.1",
      ipv6: "::1",
      hostname: "localhost",
      duration: "PT1M",
      password: "secret"
    };
    var min = s.minLength || 0;
    var max = s.maxLength;
    function fit(v) {
      if (v.length < min) v = v + new Array(min - v.length + 1).join("x");
      if (max !== undefined && v.length > max) v = v.slice(0, max);
      return v;
    }
    var value = fit(formats[s.format] || "string");
    if (s.pattern) {
      var re = null;
      try {
        re = new RegExp(s.pattern);
      } catch (err) {
        re = null;
      }
      if (re && !re.test(value)) {
        var sample = sampleForPattern(s.pattern, min);
        if (sample !== null && re.test(sample) && sample.length >= min &&
            (max === undefined || sample.length <= max)) {
          return sample;
        }
        var candidates = [key || "", "example", "abc", "a", "A", "a1", "1", "0", "x", "ab-12"];
        for (var i = 0; i < candidates.length; i++) {
          var c = fit(candidates[i]);
          if (c && re.test(c)) return c;
        }
      }
    }
    return value;
  }

  function example(schema, doc, key, depth) {
    depth = depth || 0;
    if (!schema || typeof schema !== "object" || depth > 8) return null;
    var s = resolve(schema, doc);
    if (s.default !== undefined) return clone(s.default);
    if (s.const !== undefined) return clone(s.const);
    if (Array.isArray(s.examples) && s.examples.length) return clone(s.examples[0]);
    if (s.example !== undefined) return clone(s.example);
    if (Array.isArray(s.enum) && s.enum.length) return clone(s.enum[0]);
    var variants = variantsOf(s);
    if (variants && variants.length) {
      var pick = variants.filter(function (v) { return !isNullSchema(v, doc); })[0] || variants[0];
      return example(pick, doc, key, depth + 1);
    }
    if (s.allOf && s.allOf.length) {
      var merged = {};
      var allObjects = true;
      s.allOf.forEach(function (part) {
        var v = example(part, doc, key, depth + 1);
        if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(merged, v);
        else allObjects = false;
      });
      if (allObjects) return merged;
      return example(s.allOf[0], doc, key, depth + 1);
    }
    var type = s.type;
    if (Array.isArray(type)) {
      type = type.filter(function (t) { return t !== "null"; })[0] || "null";
    }
    if (!type) type = s.properties ? "object" : s.items ? "array" : null;
    switch (type) {
      case "object": {
        var out = {};
        Object.keys(s.properties || {}).forEach(function (k) {
          out[k] = example(s.properties[k], doc, k, depth + 1);
        });
        return out;
      }
      case "array": {
        if (s.maxItems === 0) return [];
        var count = Math.max(1, s.minItems || 0);
        var items = [];
        for (var i = 0; i < count; i++) items.push(example(s.items || {}, doc, key, depth + 1));
        return items;
      }
      case "string":
        return exampleString(s, key);
      case "integer":
        return exampleNumber(s, true);
      case "number":
        return exampleNumber(s, false);
      case "boolean":
        return true;
      default:
        return null;
    }
  }

  function examplePayload(event) {
    if (!event.payload) return {};
    var value = example(event.payload, event.payload, "", 0);
    return value === null || value === undefined ? {} : value;
  }

  // ---------------------------------------------------------------------------------------
  // Simulated clients. Each one is a Client of the browser client the package ships
  // (<docs_url>/static/socketspec.js, built from clients/js): it builds the URL, answers the
  // heartbeats, keeps the acks and speaks the rest of the protocol. The page draws what it
  // does: every frame both ways (the client's onFrame), the socket's close code and reason,
  // and the replies under a card.

  var socketspec = null; // the socketspec.js module, once load() has imported it
  var clientLoaded = null; // load()'s import of it

  function importClient() {
    // The same query as the page's own assets: a docs access token guards this copy too.
    return import(CFG.docsUrl + "/static/socketspec.js" + CFG.query).then(function (module) {
      socketspec = module;
      return module;
    });
  }

  // The endpoint of the default namespace; the client appends "/x" for namespace "/x".
  function endpoint() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + (CFG.wsPath || "/ws");
  }

  // Where a namespace is served, as the page shows it.
  function wsUrl(namespace) {
    if (!namespace || namespace === "/") return endpoint();
    return endpoint().replace(/\/+$/, "") + namespace;
  }

  function wsUrlShown(namespace, hasToken) {
    return wsUrl(namespace) + (hasToken ? "?token=•••" : "");
  }

  var utf8 = new TextEncoder();

  // The WebSocket class a simulated client dials with: the client speaks the protocol over
  // it; these listeners only tell the page when the socket opens, fails and closes (the
  // close code and reason, which the client's own "close" event does not carry).
  function watchedSocket(sim, isCurrent) {
    return class extends window.WebSocket {
      constructor(url, protocols) {
        super(url, protocols);
        this.addEventListener("open", function () {
          if (isCurrent()) sim.note("WebSocket open");
        });
        this.addEventListener("error", function () {
          if (isCurrent()) sim.note("WebSocket error", "error");
        });
        this.addEventListener("close", function (e) {
          if (isCurrent()) sim.socketClosed(e.code, e.reason);
        });
      }
    };
  }

  function SimulatedClient(n) {
    this.n = n;
    this.name = "Client " + n;
    this.hue = CLIENT_HUES[(n - 1) % CLIENT_HUES.length];
    this.namespace = state.namespaces.indexOf("/") >= 0 ? "/" : state.namespaces[0] || "/";
    this.token = "";
    this.conn = null; // the socketspec.js Client of the latest connection
    this.status = "disconnected";
    this.capture = null; // {card, until}
    this.info = null;
    this.framesIn = 0;
    this.framesOut = 0;
    this.lastOut = null; // the latest frame written, as the log shows it
    this.opening = null;
    this.failOpening = null;
    this.build();
  }

  SimulatedClient.prototype.label = function () {
    return this.name + " · " + this.namespace;
  };

  SimulatedClient.prototype.build = function () {
    var self = this;
    this.statusEl = h("span", { class: "status", testid: "client-status", text: "disconnected" });
    this.infoEl = h("div", { class: "client-info", testid: "client-info" });
    this.nsSelect = h("select", {
      testid: "client-namespace",
      "aria-label": "Namespace",
      onchange: function () {
        self.namespace = self.nsSelect.value;
        self.updateUrl();
        refreshTryClients();
      }
    }, state.namespaces.map(function (ns) {
      return h("option", { value: ns, text: ns });
    }));
    this.nsSelect.value = this.namespace;
    this.tokenInput = h("input", {
      type: "text",
      testid: "client-token",
      placeholder: state.schema && state.schema.auth ? "token (required)" : "token (optional)",
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": "Token",
      oninput: function () {
        self.token = self.tokenInput.value.trim();
        self.updateUrl();
      },
      onkeydown: function (e) {
        if (e.key === "Enter") self.toggle();
      }
    });
    this.connectBtn = h("button", {
      type: "button",
      class: "btn btn-primary btn-sm",
      testid: "client-connect",
      text: "Connect",
      onclick: function () { self.toggle(); }
    });
    this.urlEl = h("code", { class: "client-url", testid: "client-url" });
    this.countsEl = h("span", { class: "counts", testid: "client-counts" });
    this.log = h("div", { class: "log", testid: "client-log", role: "log", "aria-live": "polite" });
    this.rawInput = h("input", {
      type: "text",
      class: "raw-input",
      testid: "client-raw",
      spellcheck: "false",
      placeholder: "{\"event\": \"…\", \"payload\": {}}",
      "aria-label": "Raw frame",
      onkeydown: function (e) {
        if (e.key === "Enter") self.sendRaw();
      }
    });
    this.el = h("section", {
      class: "client",
      testid: "client-" + this.n,
      "data-client": this.n,
      "data-state": "disconnected",
      style: "--hue:" + this.hue
    },
    h("header", { class: "client-head" },
      h("span", { class: "client-dot", "aria-hidden": "true" }),
      h("strong", { class: "client-name", text: this.name }),
      this.statusEl,
      h("button", {
        type: "button",
        class: "icon-btn",
        title: "Remove this client",
        "aria-label": "Remove " + this.name,
        testid: "client-remove",
        text: "×",
        onclick: function () { self.remove(); }
      })),
    h("div", { class: "client-controls" },
      h("label", { class: "field field-ns" }, h("span", { text: "Namespace" }), this.nsSelect),
      h("label", { class: "field field-token" }, h("span", { text: "Token" }), this.tokenInput),
      this.connectBtn),
    h("div", { class: "client-meta" }, this.urlEl, this.infoEl),
    h("div", { class: "log-head" },
      h("span", { text: "Frames" }),
      this.countsEl,
      h("button", {
        type: "button",
        class: "link-btn",
        testid: "client-clear-log",
        text: "clear",
        onclick: function () { clear(self.log); }
      })),
    this.log,
    h("div", { class: "raw" },
      this.rawInput,
      h("button", {
        type: "button",
        class: "btn btn-sm",
        testid: "client-raw-send",
        text: "Send frame",
        onclick: function () { self.sendRaw(); }
      })));
    this.updateUrl();
    this.updateCounts();
  };

  SimulatedClient.prototype.updateUrl = function () {
    var url = wsUrlShown(this.namespace, !!this.token);
    this.urlEl.textContent = url;
    this.urlEl.title = url;
  };

  SimulatedClient.prototype.updateCounts = function () {
    this.countsEl.textContent = "↑ " + this.framesOut + " out · ↓ " + this.framesIn + " in";
  };

  SimulatedClient.prototype.setStatus = function (status, text) {
    this.status = status;
    this.el.setAttribute("data-state", status);
    this.statusEl.textContent = text || status;
    this.statusEl.className = "status status-" + status;
    var live = status === "connected" || status === "connecting";
    this.connectBtn.textContent = live ? "Disconnect" : "Connect";
    this.connectBtn.className = "btn btn-sm " + (live ? "btn-danger" : "btn-primary");
    this.nsSelect.disabled = live;
    this.tokenInput.disabled = live;
    refreshTryClients();
  };

  SimulatedClient.prototype.isOpen = function () {
    return this.conn !== null && this.conn.state === "open" && this.status === "connected";
  };

  SimulatedClient.prototype.toggle = function () {
    if (this.status === "connected" || this.status === "connecting") this.disconnect();
    else this.connect().catch(function () { /* shown in the log */ });
  };

  SimulatedClient.prototype.connect = function () {
    var self = this;
    if (this.isOpen()) return Promise.resolve(this);
    if (this.opening) return this.opening;
    if (!socketspec) return clientLoaded.then(function () { return self.connect(); });
    this.info = null;
    this.infoEl.textContent = "";
    this.setStatus("connecting");
    this.note("connecting to " + wsUrlShown(this.namespace, !!this.token));
    var conn = null;
    var isCurrent = function () { return conn !== null && self.conn === conn; };
    try {
      conn = new socketspec.Client(endpoint(), {
        namespace: this.namespace,
        token: this.token || undefined,
        reconnect: false, // a closed client stays closed, and the log says why
        WebSocket: watchedSocket(this, isCurrent),
        onFrame: function (direction, text) {
          if (isCurrent()) self.frame(direction, text);
        }
      });
    } catch (err) {
      this.setStatus("closed", "error");
      this.note("cannot open: " + err.message, "error");
      return Promise.reject(err);
    }
    this.conn = conn;
    conn.on("connect", function (greeting) {
      if (!isCurrent()) return;
      self.info = greeting || {};
      self.showInfo();
      self.setStatus("connected");
    });
    var opening = new Promise(function (resolveOpen, rejectOpen) {
      self.failOpening = rejectOpen; // the socket closed before the greeting
      conn.open().then(function () { resolveOpen(self); }, rejectOpen);
    });
    var done = function () {
      if (self.opening === opening) {
        self.opening = null;
        self.failOpening = null;
      }
    };
    opening.then(done, done);
    this.opening = opening;
    return opening;
  };

  SimulatedClient.prototype.socketClosed = function (code, reason) {
    var meaning = CLOSE_CODES[code] || "";
    var text = "closed " + code + (meaning ? " · " + meaning : "");
    this.note("connection " + text + (reason ? " (" + reason + ")" : ""),
      code === 1000 ? "system" : "error");
    this.capture = null;
    this.setStatus("closed", text);
    if (this.failOpening) this.failOpening(new Error("connection " + text));
  };

  SimulatedClient.prototype.disconnect = function () {
    if (this.conn && this.conn.state !== "closed") {
      this.note("closing (1000)");
      this.conn.close();
    }
  };

  SimulatedClient.prototype.remove = function () {
    var conn = this.conn;
    this.conn = null;
    if (conn) conn.close();
    state.clients = state.clients.filter(function (c) { return c !== this; }, this);
    if (this.el.parentNode) this.el.parentNode.removeChild(this.el);
    refreshTryClients();
  };

  // The "send raw" box: exactly what was typed goes out, JSON or not, so the page shows what
  // the server answers to any frame.
  SimulatedClient.prototype.sendRaw = function () {
    var self = this;
    var text = this.rawInput.value;
    if (!text.trim()) return;
    var go = function () {
      try {
        self.conn.sendRaw(text);
        self.rawInput.value = "";
      } catch (err) {
        self.note("not sent: " + err.message, "error");
      }
    };
    if (this.isOpen()) go();
    else this.connect().then(go, function () { /* shown in the log */ });
  };

  // Every frame the client writes or receives (its onFrame), before it acts on one received.
  SimulatedClient.prototype.frame = function (direction, text) {
    var frame;
    try {
      frame = JSON.parse(text);
    } catch (err) {
      frame = text;
    }
    if (direction === "in") this.framesIn += 1;
    else this.framesOut += 1;
    this.updateCounts();
    this.logFrame(direction, frame, utf8.encode(text).length);
    if (direction === "out") {
      this.lastOut = frame;
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.event === "__connect__" || frame.event === "__ping__") return;
    // An answer to a call: the card shows it when the call settles.
    if (frame.ack !== undefined && frame.ack !== null) return;
    if (this.capture && Date.now() <= this.capture.until) {
      this.capture.card.showReply(this, frame, null);
    }
  };

  SimulatedClient.prototype.showInfo = function () {
    var info = this.info || {};
    var parts = [];
    if (info.conn_id) parts.push(h("span", { title: info.conn_id }, "conn ", h("code", { text: String(info.conn_id).slice(0, 8) })));
    if (info.shard !== undefined) parts.push(h("span", null, "shard ", h("code", { text: String(info.shard) })));
    if (info.user_id) parts.push(h("span", null, "user ", h("code", { text: String(info.user_id) })));
    clear(this.infoEl);
    append(this.infoEl, parts);
  };

  SimulatedClient.prototype.scrollLog = function (stick) {
    if (stick) this.log.scrollTop = this.log.scrollHeight;
  };

  SimulatedClient.prototype.nearBottom = function () {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
  };

  SimulatedClient.prototype.trimLog = function () {
    while (this.log.childNodes.length > LOG_LIMIT) this.log.removeChild(this.log.firstChild);
  };

  SimulatedClient.prototype.note = function (text, kind) {
    var stick = this.nearBottom();
    this.log.appendChild(h("div", {
      class: "log-entry log-note kind-" + (kind || "system"),
      testid: "log-note",
      "data-direction": "note"
    },
    h("div", { class: "log-line" },
      h("span", { class: "log-time", text: clock(new Date()) }),
      h("span", { class: "log-text", text: text }))));
    this.trimLog();
    this.scrollLog(stick);
  };

  SimulatedClient.prototype.logFrame = function (direction, frame, size) {
    var stick = this.nearBottom();
    this.log.appendChild(frameEntry(direction, frame, size, "log-entry"));
    this.trimLog();
    this.scrollLog(stick);
  };

  function frameKind(frame) {
    var event = frame && typeof frame === "object" ? frame.event : null;
    if (event === "__error__") return "error";
    if (event === "__ack__") return "ack";
    if (event === "__ping__" || event === "__pong__") return "heartbeat";
    if (isSystemEvent(event)) return "system";
    return "event";
  }

  function frameEntry(direction, frame, size, testid) {
    var isObject = frame && typeof frame === "object";
    var event = isObject ? frame.event : null;
    var kind = isObject ? frameKind(frame) : "raw";
    var hasAck = isObject && frame.ack !== undefined && frame.ack !== null;
    var code = kind === "error" && frame.payload && frame.payload.code ? frame.payload.code : null;
    var now = new Date();
    return h("div", {
      class: "log-entry dir-" + direction + " kind-" + kind,
      testid: testid,
      "data-direction": direction,
      "data-event": event || "",
      "data-ack": hasAck ? String(frame.ack) : null,
      "data-code": code,
      "data-ts": now.toISOString()
    },
    h("div", { class: "log-line" },
      h("span", { class: "log-time", text: clock(now) }),
      h("span", { class: "log-dir", title: direction === "in" ? "received" : "sent",
        text: direction === "in" ? "↓ in" : "↑ out" }),
      h("span", { class: "log-event", text: event || "(not a JSON envelope)" }),
      code ? h("span", { class: "tag tag-error", text: code }) : null,
      hasAck ? h("span", { class: "tag tag-ack", text: "ack " + frame.ack }) : null,
      size !== undefined ? h("span", { class: "log-size", text: bytes(size) }) : null),
    h("pre", { class: "log-json", text: isObject ? frameBody(frame) : String(frame) }));
  }

  function addClient(options) {
    var client = new SimulatedClient(state.nextClientId++);
    if (options && options.namespace && state.namespaces.indexOf(options.namespace) >= 0) {
      client.namespace = options.namespace;
      client.nsSelect.value = options.namespace;
      client.updateUrl();
    }
    state.clients.push(client);
    $("client-list").appendChild(client.el);
    refreshTryClients();
    return client;
  }

  // ---------------------------------------------------------------------------------------
  // Event cards

  function Card(event) {
    this.event = event;
    this.build();
  }

  Card.prototype.searchText = function () {
    var e = this.event;
    return [
      e.name, e.namespace, e.description, (e.tags || []).join(" "),
      (e.emits || []).map(function (x) { return x.event + " " + (x.description || ""); }).join(" "),
      (e.broadcasts || []).map(function (x) { return x.event + " " + (x.room || ""); }).join(" "),
      e.ordered ? "ordered" : "", e.deprecated ? "deprecated" : ""
    ].join(" ").toLowerCase();
  };

  Card.prototype.build = function () {
    var self = this;
    var e = this.event;
    var summary = (e.description || "").split("\n")[0];
    this.body = h("div", { class: "card-body", testid: "card-body", hidden: true });
    this.head = h("button", {
      type: "button",
      class: "card-head",
      testid: "card-toggle",
      "aria-expanded": "false",
      onclick: function () { self.setOpen(self.body.hidden); }
    },
    h("span", { class: "ns", title: "namespace", testid: "card-namespace", text: e.namespace }),
    h("span", { class: "event-name", testid: "card-name", text: e.name }),
    e.ordered ? h("span", { class: "badge badge-ordered", testid: "badge-ordered",
      title: "Every member of a room sees this event's messages in the same order",
      text: "ORDERED" }) : null,
    e.deprecated ? h("span", { class: "badge badge-deprecated", testid: "badge-deprecated",
      title: "Deprecated: avoid in new clients", text: "DEPRECATED" }) : null,
    h("span", { class: "summary", text: summary }),
    h("span", { class: "chevron", "aria-hidden": "true" }));
    this.el = h("article", {
      class: "card" + (e.deprecated ? " is-deprecated" : ""),
      testid: "event-card-" + e.name,
      "data-event": e.name,
      "data-namespace": e.namespace
    }, this.head, this.body);
    this.filled = false;
  };

  Card.prototype.setOpen = function (open) {
    if (open && !this.filled) this.fill();
    this.body.hidden = !open;
    this.head.setAttribute("aria-expanded", open ? "true" : "false");
    this.el.classList.toggle("is-open", open);
  };

  Card.prototype.fill = function () {
    var self = this;
    var e = this.event;
    this.filled = true;
    var tags = (e.tags || []).length
      ? e.tags.map(function (t) { return h("span", { class: "chip chip-tag", text: t }); })
      : h("span", { class: "muted", text: "none" });
    append(this.body, [
      e.description ? h("p", { class: "description", testid: "card-description", text: e.description }) : null,
      h("dl", { class: "facts" },
        h("dt", { text: "Namespace" }), h("dd", null, h("code", { text: e.namespace })),
        h("dt", { text: "Endpoint" }), h("dd", null, h("code", { text: wsUrl(e.namespace) })),
        h("dt", { text: "Tags" }), h("dd", null, tags),
        h("dt", { text: "Delivery" }), h("dd", null, e.ordered
          ? "ordered: room members see these messages in one order"
          : "unordered")),
      e.deprecated ? h("p", { class: "callout callout-warn", testid: "deprecated-note",
        text: "This event is deprecated and may be removed: avoid it in new clients." }) : null,
      h("h4", { text: "Payload" }),
      schemaTable(e.payload, "payload-schema"),
      this.repliesSection(),
      h("details", { class: "raw-schema" },
        h("summary", { text: "Payload JSON Schema" }),
        h("pre", { class: "code", text: e.payload ? pretty(e.payload) : "null" }))
    ]);
    this.tryButton = h("button", {
      type: "button",
      class: "btn btn-primary",
      testid: "try-it",
      text: "Try it out",
      onclick: function () { self.toggleTry(); }
    });
    append(this.body, h("div", { class: "try-bar" }, this.tryButton,
      h("span", { class: "muted", text: "Send this event from a simulated client and see the reply here." })));
  };

  Card.prototype.repliesSection = function () {
    var e = this.event;
    var emits = e.emits || [];
    var broadcasts = e.broadcasts || [];
    var parts = [h("h4", { text: "Replies" })];
    parts.push(h("p", { class: "muted small" },
      "With an ", h("code", { text: "ack" }), " in the frame, the handler's return value comes back as ",
      h("code", { text: "__ack__" }), "; errors arrive as ", h("code", { text: "__error__" }),
      " with the same ack."));
    if (!emits.length && !broadcasts.length) {
      parts.push(h("p", { class: "muted", text: "No emitted or broadcast events are declared." }));
    }
    emits.forEach(function (item) {
      parts.push(h("div", { class: "reply reply-emit", testid: "emit-" + item.event },
        h("div", { class: "reply-head" },
          h("span", { class: "tag tag-emit", text: "EMITS" }),
          h("code", { class: "reply-event", text: item.event }),
          h("span", { class: "muted", text: "to the sender" })),
        item.description ? h("p", { class: "reply-desc", text: item.description }) : null,
        schemaTable(item.payload, "emit-schema")));
    });
    broadcasts.forEach(function (item) {
      parts.push(h("div", { class: "reply reply-broadcast", testid: "broadcast-" + item.event },
        h("div", { class: "reply-head" },
          h("span", { class: "tag tag-broadcast", text: "BROADCASTS" }),
          h("code", { class: "reply-event", text: item.event }),
          item.room ? h("span", { class: "muted" }, "to room ", h("code", { text: item.room })) : null),
        item.description ? h("p", { class: "reply-desc", text: item.description }) : null,
        schemaTable(item.payload, "broadcast-schema")));
    });
    return parts;
  };

  Card.prototype.toggleTry = function () {
    if (!this.tryPanel) this.buildTry();
    var open = this.tryPanel.hidden;
    this.tryPanel.hidden = !open;
    this.tryButton.textContent = open ? "Close" : "Try it out";
    this.tryButton.className = "btn " + (open ? "btn-ghost" : "btn-primary");
    if (open) {
      state.openTryPanels.add(this);
      this.refreshClients();
      this.editor.focus();
    } else {
      state.openTryPanels.delete(this);
    }
  };

  Card.prototype.buildTry = function () {
    var self = this;
    var e = this.event;
    this.editor = h("textarea", {
      class: "editor",
      testid: "try-editor",
      spellcheck: "false",
      "aria-label": "Payload of " + e.name,
      oninput: function () { self.checkEditor(); },
      onkeydown: function (ev) {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
          ev.preventDefault();
          self.send();
        } else if (ev.key === "Tab" && !ev.shiftKey) {
          ev.preventDefault();
          var el = self.editor;
          var start = el.selectionStart;
          el.value = el.value.slice(0, start) + "  " + el.value.slice(el.selectionEnd);
          el.selectionStart = el.selectionEnd = start + 2;
        }
      }
    });
    this.resetEditor();
    this.clientSelect = h("select", { testid: "try-client", "aria-label": "Send from" });
    this.ackBox = h("input", { type: "checkbox", testid: "try-ack", checked: true });
    this.editorError = h("div", { class: "editor-error", testid: "try-editor-error", hidden: true });
    this.nsWarning = h("div", { class: "ns-warning", testid: "try-ns-warning", hidden: true });
    this.clientSelect.addEventListener("change", function () { self.checkNamespace(); });
    this.results = h("div", { class: "try-results", testid: "try-result", "aria-live": "polite" });
    this.sendButton = h("button", {
      type: "button",
      class: "btn btn-send",
      testid: "try-send",
      onclick: function () { self.send(); }
    }, "▶ Send event");
    this.tryPanel = h("div", { class: "try-panel", testid: "try-panel", hidden: true },
      h("div", { class: "try-toolbar" },
        h("label", { class: "field" }, h("span", { text: "Send from" }), this.clientSelect),
        h("label", { class: "toggle" }, this.ackBox, " request an ack"),
        h("button", {
          type: "button",
          class: "link-btn",
          testid: "try-reset",
          text: "reset example",
          onclick: function () { self.resetEditor(); self.checkEditor(); }
        })),
      this.nsWarning,
      h("div", { class: "editor-label" }, "payload ",
        h("span", { class: "muted", text: "(JSON; Ctrl+Enter sends)" })),
      this.editor,
      this.editorError,
      h("div", { class: "try-actions" },
        this.sendButton,
        h("button", {
          type: "button",
          class: "btn btn-ghost",
          testid: "try-clear",
          text: "Clear replies",
          onclick: function () { clear(self.results); }
        })),
      this.results);
    this.body.appendChild(this.tryPanel);
  };

  Card.prototype.resetEditor = function () {
    var payload = examplePayload(this.event);
    this.editor.value = pretty(payload);
    var lines = this.editor.value.split("\n").length;
    this.editor.rows = Math.min(Math.max(lines + 1, 4), 18);
  };

  Card.prototype.checkEditor = function () {
    try {
      JSON.parse(this.editor.value);
      this.editorError.hidden = true;
      this.editor.classList.remove("invalid");
      return true;
    } catch (err) {
      this.editorError.hidden = false;
      this.editorError.textContent = "Not valid JSON: " + err.message;
      this.editor.classList.add("invalid");
      return false;
    }
  };

  Card.prototype.refreshClients = function () {
    if (!this.clientSelect) return;
    var ns = this.event.namespace;
    var previous = this.clientSelect.value;
    clear(this.clientSelect);
    var best = null;
    state.clients.forEach(function (client) {
      var label = client.name + " (" + client.namespace + ") · " + client.status;
      this.clientSelect.appendChild(h("option", { value: String(client.n), text: label }));
      if (best === null && client.namespace === ns) best = String(client.n);
    }, this);
    this.clientSelect.appendChild(h("option", { value: "new", text: "+ a new client on " + ns }));
    var keep = state.clients.some(function (c) { return String(c.n) === previous; }) || previous === "new";
    this.clientSelect.value = keep && previous ? previous : best || "new";
    this.checkNamespace();
  };

  Card.prototype.selectedClient = function () {
    var value = this.clientSelect.value;
    if (value === "new") return null;
    return state.clients.filter(function (c) { return String(c.n) === value; })[0] || null;
  };

  Card.prototype.checkNamespace = function () {
    var client = this.selectedClient();
    if (client && client.namespace !== this.event.namespace) {
      this.nsWarning.hidden = false;
      this.nsWarning.textContent = client.name + " is on namespace " + client.namespace +
        ", this event is served on " + this.event.namespace + ": the server will answer UNKNOWN_EVENT.";
    } else {
      this.nsWarning.hidden = true;
    }
  };

  Card.prototype.send = function () {
    var self = this;
    if (!this.checkEditor()) return;
    var payload = JSON.parse(this.editor.value);
    var client = this.selectedClient();
    if (!client) {
      client = addClient({ namespace: this.event.namespace });
      this.clientSelect.value = String(client.n);
    }
    var ready = client.isOpen() ? Promise.resolve(client) : client.connect();
    this.sendButton.disabled = true;
    ready.then(function () {
      var name = self.event.name;
      var written = client.framesOut;
      var sentAt = Date.now();
      var answer = null;
      if (self.ackBox.checked) answer = client.conn.call(name, payload, { timeout: ACK_TIMEOUT_S });
      else client.conn.emit(name, payload);
      // The frame as written, with the ack id the client gave it.
      var frame = client.framesOut > written ? client.lastOut : { event: name, payload: payload };
      self.showSent(client, frame);
      client.capture = { card: self, until: Date.now() + CAPTURE_MS };
      if (answer) self.followCall(client, answer, frame, sentAt);
    }).catch(function (err) {
      self.showNote(client, "Could not send: " + err.message + ".", "error");
    }).then(function () {
      self.sendButton.disabled = false;
    });
  };

  // Shows how a call settles: its __ack__, its __error__, or why no answer came.
  Card.prototype.followCall = function (client, answer, frame, sentAt) {
    var self = this;
    var settled = false;
    var ack = frame.ack;
    setTimeout(function () {
      if (!settled) {
        self.showNote(client, "No __ack__ yet for ack " + ack + ": acks only come back " +
          "when the handler returns a value.", "muted");
      }
    }, NO_ACK_HINT_MS);
    answer.then(function (payload) {
      settled = true;
      self.showReply(client, { event: "__ack__", ack: ack, payload: payload }, Date.now() - sentAt);
    }, function (err) {
      settled = true;
      if (err.payload && err.payload.code) { // the server's __error__
        self.showReply(client, { event: "__error__", ack: ack, payload: err.payload }, Date.now() - sentAt);
      } else if (err.code === "TIMEOUT") {
        self.showNote(client, "No __ack__ for ack " + ack + " within " + ACK_TIMEOUT_S + " s.", "error");
      } else {
        self.showNote(client, "No reply: " + err.message + ".", "error");
      }
    });
  };

  Card.prototype.resultRow = function (client, kind, title, extra, body, attrs) {
    var row = h("div", Object.assign({
      class: "reply-row kind-" + kind,
      testid: "try-reply",
      "data-kind": kind,
      style: "--hue:" + client.hue
    }, attrs || {}),
    h("div", { class: "reply-line" },
      h("span", { class: "reply-client", text: client.name }),
      h("span", { class: "reply-kind", text: title }),
      extra,
      h("span", { class: "log-time", text: clock(new Date()) })),
    body);
    this.results.appendChild(row);
    while (this.results.childNodes.length > 100) this.results.removeChild(this.results.firstChild);
    return row;
  };

  Card.prototype.showSent = function (client, frame) {
    this.resultRow(client, "sent", "↑ sent",
      [h("code", { class: "reply-event", text: frame.event }),
        frame.ack !== undefined ? h("span", { class: "tag tag-ack", text: "ack " + frame.ack }) : null],
      h("pre", { class: "reply-json", text: inline(frame) }),
      { "data-event": frame.event });
  };

  Card.prototype.showReply = function (client, frame, rtt) {
    var kind = frameKind(frame);
    var event = frame.event;
    var timing = rtt !== null && rtt !== undefined ? h("span", { class: "rtt", text: rtt + " ms" }) : null;
    if (kind === "error") {
      var p = frame.payload || {};
      var errors = p.details && Array.isArray(p.details.errors) ? p.details.errors : [];
      this.resultRow(client, "error", "✕ __error__",
        [h("span", { class: "tag tag-error", testid: "error-code", text: p.code || "ERROR" }),
          frame.ack !== undefined ? h("span", { class: "tag tag-ack", text: "ack " + frame.ack }) : null,
          timing],
        [h("div", { class: "error-message", text: p.message || "" }),
          errors.length ? h("ul", { class: "error-list" }, errors.map(function (item) {
            var loc = Array.isArray(item.loc) ? item.loc.join(".") : String(item.loc || "");
            return h("li", null, loc ? h("code", { text: loc }) : null, " ", item.msg || pretty(item));
          })) : null,
          h("pre", { class: "reply-json", text: formatJson(p) })],
        { "data-event": event, "data-code": p.code || "" });
    } else if (kind === "ack") {
      this.resultRow(client, "ack", "✓ __ack__",
        [h("span", { class: "tag tag-ack", text: "ack " + frame.ack }), timing],
        h("pre", { class: "reply-json", text: formatJson(frame.payload) }),
        { "data-event": event });
    } else {
      this.resultRow(client, "event", "↓ event",
        [h("code", { class: "reply-event", text: String(event) }), timing],
        h("pre", { class: "reply-json", text: formatJson(frame.payload) }),
        { "data-event": event });
    }
  };

  Card.prototype.showNote = function (client, text, kind) {
    if (!this.results) return;
    this.resultRow(client, kind === "error" ? "failed" : "note", kind === "error" ? "!" : "…",
      h("span", { class: "reply-note", text: text }), null);
  };

  function refreshTryClients() {
    state.openTryPanels.forEach(function (card) { card.refreshClients(); });
  }

  // ---------------------------------------------------------------------------------------
  // The catalogue

  var cards = [];

  function groupEvents(events) {
    var groups = new Map();
    events.forEach(function (e) {
      var tag = (e.tags && e.tags.length) ? e.tags[0] : "default";
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(e);
    });
    var names = Array.from(groups.keys()).sort(function (a, b) {
      if (a === "default") return 1;
      if (b === "default") return -1;
      return a.localeCompare(b);
    });
    return names.map(function (name) { return { tag: name, events: groups.get(name) }; });
  }

  function renderCatalogue() {
    var container = $("groups");
    clear(container);
    cards = [];
    groupEvents(state.events).forEach(function (group) {
      var list = h("div", { class: "cards" });
      var section = h("section", { class: "tag-group", testid: "tag-group-" + group.tag, "data-tag": group.tag },
        h("h3", { class: "tag-title" },
          h("span", { text: group.tag }),
          h("span", { class: "count", text: group.events.length + (group.events.length === 1 ? " event" : " events") })),
        list);
      group.events.forEach(function (e) {
        var card = new Card(e);
        card.search = card.searchText();
        card.section = section;
        cards.push(card);
        list.appendChild(card.el);
      });
      container.appendChild(section);
    });
  }

  function applySearch() {
    var terms = $("search").value.toLowerCase().split(/\s+/).filter(Boolean);
    var visible = 0;
    var sections = new Map();
    cards.forEach(function (card) {
      var match = terms.every(function (t) { return card.search.indexOf(t) >= 0; });
      card.el.hidden = !match;
      if (match) visible += 1;
      sections.set(card.section, (sections.get(card.section) || 0) + (match ? 1 : 0));
    });
    sections.forEach(function (count, section) { section.hidden = count === 0; });
    $("no-match").hidden = visible !== 0 || cards.length === 0;
  }

  function renderSystem(schema) {
    var box = $("system-events");
    var body = box.querySelector(".system-body");
    clear(body);
    var clientSends = schema.client_system_events || [];
    append(body, [
      h("p", { class: "muted small", text: "Reserved names; each client (socketspec.js) answers __ping__ with __pong__ by itself." }),
      h("div", { class: "chips" }, (schema.system_events || []).map(function (name) {
        return h("span", { class: "chip chip-system", title: clientSends.indexOf(name) >= 0
          ? "a client may send this" : "sent by the server", text: name });
      })),
      h("h4", { text: "Error codes" }),
      h("div", { class: "chips" }, (schema.error_codes || []).map(function (code) {
        return h("span", { class: "chip chip-error", text: code });
      }))
    ]);
    box.hidden = false;
  }

  function renderHeader(schema) {
    $("version").textContent = schema.version ? "v" + schema.version : "";
    $("ws-endpoint").textContent = wsUrl("/");
    var auth = $("auth-kind");
    if (schema.auth) {
      auth.hidden = false;
      auth.textContent = "auth: " + schema.auth;
      auth.title = "Connections need a token (?token= on the WebSocket URL)";
    }
    var namespaces = schema.namespaces || ["/"];
    var tags = new Set();
    state.events.forEach(function (e) { (e.tags && e.tags.length ? e.tags : ["default"]).forEach(function (t) { tags.add(t); }); });
    var stats = $("stats");
    clear(stats);
    append(stats, [
      h("span", { testid: "event-count", text: state.events.length + (state.events.length === 1 ? " event" : " events") }),
      h("span", { text: tags.size + (tags.size === 1 ? " tag" : " tags") }),
      h("span", { text: namespaces.length + (namespaces.length === 1 ? " namespace" : " namespaces") }),
      h("button", { type: "button", class: "link-btn", testid: "expand-all", text: "expand all",
        onclick: function () { cards.forEach(function (c) { if (!c.el.hidden) c.setOpen(true); }); } }),
      h("button", { type: "button", class: "link-btn", testid: "collapse-all", text: "collapse all",
        onclick: function () { cards.forEach(function (c) { c.setOpen(false); }); } })
    ]);
  }

  function showBanner(text, kind) {
    var banner = $("status-banner");
    banner.hidden = !text;
    banner.textContent = text || "";
    banner.className = "banner" + (kind ? " banner-" + kind : "");
  }

  function load() {
    $("link-schema").href = withQuery(CFG.docsUrl + "/schema");
    $("link-asyncapi").href = withQuery("/asyncapi.json");
    $("ws-endpoint").textContent = wsUrl("/");
    var headers = {};
    if (CFG.token) headers.Authorization = "Bearer " + CFG.token;
    var schemaLoaded = fetch(CFG.docsUrl + "/schema", { headers: headers, cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          throw new Error("The docs need an access token: open this page with ?token=<docs access token>.");
        }
        if (!response.ok) throw new Error("The schema answered HTTP " + response.status + ".");
        return response.json();
      });
    clientLoaded = importClient().catch(function (err) {
      throw new Error("The browser client (socketspec.js) did not load: " + err.message);
    });
    Promise.all([schemaLoaded, clientLoaded])
      .then(function (loaded) {
        var schema = loaded[0];
        state.schema = schema;
        state.events = schema.events || [];
        state.namespaces = (schema.namespaces && schema.namespaces.length) ? schema.namespaces : ["/"];
        renderHeader(schema);
        renderCatalogue();
        renderSystem(schema);
        applySearch();
        showBanner(state.events.length ? "" : "This app registers no events yet.", state.events.length ? null : "info");
        var first = addClient();
        if (!schema.auth) {
          first.connect().catch(function () { /* shown in the log */ });
        } else {
          first.note("This server authenticates connections (" + schema.auth + "): enter a token, then Connect.");
        }
        document.body.setAttribute("data-ready", "true");
      })
      .catch(function (err) {
        showBanner(err.message, "error");
        document.body.setAttribute("data-ready", "error");
      });
  }

  function start() {
    $("search").addEventListener("input", applySearch);
    $("add-client").addEventListener("click", function () {
      var client = addClient();
      client.tokenInput.focus();
    });
    $("hide-heartbeats").addEventListener("change", function (e) {
      $("client-list").classList.toggle("hide-heartbeats", e.target.checked);
    });
    document.addEventListener("keydown", function (e) {
      var tag = (e.target && e.target.tagName) || "";
      if (e.key === "/" && tag !== "INPUT" && tag !== "TEXTAREA" && tag !== "SELECT") {
        e.preventDefault();
        $("search").focus();
      }
    });
    load();
  }

  // Test hooks and console helpers: window.socketspecDocs.clients, .addClient().
  window.socketspecDocs = {
    state: state,
    addClient: addClient,
    example: function (schema) { return example(schema, schema, "", 0); }
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
