// Drives the built browser client (its path is argv[2]) against a shard (argv[3], ws://...)
// and prints what it observed as one JSON object; the pytest beside this file judges it.
// argv[4] and argv[5] are JWTs: a short one to start with, a long one the refresh hands over.
// argv[6] is a second shard (ws://...) whose recovery secret differs: it refuses the first's tokens.
const [, , modulePath, url, shortToken, longToken, otherUrl] = process.argv;
const { connect, Client, backoffDelay } = await import(modulePath);

const sockets = [];
class TrackedWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    sockets.push(this);
  }
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const within = async (ms, predicate, what) => {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
};
const code = (promise) => promise.then(() => "resolved", (error) => error.code);
const out = {};
const backoff = { initial: 1, maximum: 10, jitter: 0.5, attempts: null };
out.backoff_ms = [
  backoffDelay(0, backoff, () => 0),
  backoffDelay(0, backoff, () => 1),
  backoffDelay(2, backoff, () => 0.5),
  backoffDelay(10, backoff, () => 1),
];

let refreshes = 0;
let refreshed = null;
// Listening before the greeting: the short token's __auth_expiring__ may come right after it.
const a = new Client(url, {
  token: shortToken,
  reconnect: { initial: 0.05, maximum: 0.5 },
  maxOffline: 3,
  WebSocket: TrackedWebSocket,
  refreshToken: () => {
    refreshes += 1;
    return longToken;
  },
});
a.on("refreshed", (payload) => (refreshed = payload));
await a.open();
const b = await connect(url, { token: longToken });
out.client_class = a instanceof Client;
out.first_conn_id = a.connId;

out.echo = await a.call("echo", { x: 1 });
out.validation = await code(a.call("say", { room: 5 }));
out.unknown = await code(a.call("no_such_event", {}));
out.timeout = await code(a.call("slow", { seconds: 1 }, { timeout: 0.1 }));

const said = [];
a.on("said", (payload) => said.push(payload.n));
let onceCount = 0;
a.once("said", () => (onceCount += 1));
const offed = () => out.off_listener_ran = true;
a.on("said", offed).off("said", offed);
await a.call("join", { room: "lobby" });
await b.call("join", { room: "lobby" });
await b.call("say", { room: "lobby", n: 1 });
await within(5000, () => said.length === 1, "the first broadcast");

// Cut the socket with a call in flight, publish while A is away, and queue sends offline.
const reconnected = new Promise((resolve) => a.once("reconnect", resolve));
const inFlight = a.call("slow", { seconds: 0.5 }, { timeout: 10 });
await sleep(100);
sockets.at(-1).close(3000);
await within(2000, () => a.state === "reconnecting", "the reconnecting state");
await b.call("say", { room: "lobby", n: 2 });
await b.call("say", { room: "lobby", n: 3 });
const queued = a.call("echo", { queued: true });
a.emit("echo", {});
a.emit("echo", {});
out.offline_full = (() => {
  try {
    a.emit("echo", {});
    return "queued";
  } catch (error) {
    return error.code;
  }
})();
await reconnected;
out.in_flight = await inFlight;
out.queued = await queued;
out.resent_calls = a.resentCalls;
out.runs = (await a.call("runs", {})).runs;
out.recovered = a.recovered;
out.missed = a.missed;
out.same_conn_id = a.connId === out.first_conn_id;
await b.call("say", { room: "lobby", n: 4 });
await within(5000, () => said.length >= 4, "the live broadcast after recovery");
out.said = said;
out.once_count = onceCount;
out.positions = Object.keys(a.positions);

// The short token's __auth_expiring__ brings the long one; the session outlives the short one.
await within(8000, () => refreshed !== null, "the token refresh");
out.refreshes = refreshes;
out.refreshed_user = refreshed.user_id;
await sleep(2500);
out.after_expiry = await a.call("echo", { alive: true });
out.sockets = sockets.length;

// A failover to the other shard: the recovery token is refused, the session is fresh.
const failoverSockets = [];
class FailoverWebSocket extends WebSocket {
  constructor(target, ...rest) {
    const moved = new URL(target);
    if (failoverSockets.length) moved.port = new URL(otherUrl).port;
    super(moved.toString(), ...rest);
    failoverSockets.push(this);
  }
}
const c = await connect(url, {
  token: longToken,
  reconnect: { initial: 0.5, maximum: 0.5, jitter: 0 },
  WebSocket: FailoverWebSocket,
});
const firstId = c.connId;
const cReconnected = new Promise((resolve) => c.once("reconnect", resolve));
const written = code(c.call("slow", { seconds: 0.5 }, { timeout: 10 }));
await sleep(100);
failoverSockets.at(-1).close(3000);
await within(2000, () => c.state === "reconnecting", "the failover's reconnecting state");
// Given up while it waited offline (the retry is 500 ms away): it must never be sent.
out.expired_offline = await code(c.call("tally", {}, { timeout: 0.05 }));
const kept = c.call("tally", {});
await cReconnected;
out.failover_fresh = c.connId !== firstId && c.recovered === false;
out.failover_written = await written;
out.failover_kept = await kept;
await within(2000, () => c.recoveryError !== null, "the refused token's __error__");
out.failover_recovery_error = c.recoveryError.code;
out.failover_resent = c.resentCalls;
out.failover_runs = await c.call("runs", {});
c.close();

// The wire observer and the raw escape hatch (the docs page's frame log and its "send raw"),
// over a caller's own WebSocket class: every frame both ways, the raw text exactly as given.
const frames = [];
const o = await connect(url, {
  token: longToken,
  reconnect: false,
  WebSocket: TrackedWebSocket,
  onFrame: (direction, text) => frames.push([direction, text]),
});
const framesOf = (direction, event) =>
  frames.filter(([d, text]) => d === direction && text.includes(`"event":"${event}"`));
out.raw_written = o.sendRaw("{not json");
await within(5000, () => framesOf("in", "__error__").length === 1, "the answer to the raw frame");
out.raw_out = frames  // what was written besides heartbeat answers
  .filter(([d, text]) => d === "out" && !text.includes('"__pong__"'))
  .map(([, text]) => text);
out.raw_error = JSON.parse(framesOf("in", "__error__")[0][1]).payload.code;
out.observed_echo = await o.call("echo", { seen: true });
await within(5000, () => framesOf("out", "__pong__").length >= 1, "an observed heartbeat");
out.first_in = JSON.parse(frames[0][1]).event;
out.observed = {
  echo_out: framesOf("out", "echo").map(([, text]) => JSON.parse(text)),
  ack_in: framesOf("in", "__ack__").map(([, text]) => JSON.parse(text)),
  // every pong written answers a ping seen before it
  pong_after_ping: frames.findIndex(([d, t]) => d === "in" && t.includes('"__ping__"')) <
    frames.findIndex(([d, t]) => d === "out" && t.includes('"__pong__"')),
};
out.observed_socket_tracked = sockets.length === out.sockets + 1;
o.close();

// close() before the greeting: the connect promise rejects (it must not stay pending).
const early = new Client(url, { token: longToken });
const earlyOpened = code(early.open());
early.close();
out.closed_while_connecting = await Promise.race([earlyOpened, sleep(3000).then(() => "pending")]);

a.close();
out.state_after_close = a.state;
out.call_after_close = await code(a.call("echo", {}));
b.close();
console.log(JSON.stringify(out));
