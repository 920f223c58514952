/**
 * socketspec's browser client: one dependency-free ES module speaking the socketspec wire
 * protocol (docs/protocol.md) over the platform's WebSocket.
 *
 * It owns the envelope, acks as promises, heartbeats, token refresh, reconnection with
 * exponential backoff and jitter, connection-state recovery (token, `since` positions, calls
 * in flight resent with their ack id, or rejected with SESSION_LOST when the session comes
 * back fresh), a bounded offline queue, and the types that check an app's events against the
 * maps `socketspec export-schema --format typescript` generates. It does not own
 * deduplication (the server sends none) nor the app's resync of the rooms in `missed`.
 */

export type Payload = Record<string, unknown>;
export type Listener = (payload: any, envelope: Envelope) => void;

export interface Envelope {
  event: string;
  payload?: any;
  ack?: string | number;
  room?: string;
  pos?: string;
}

/** What a client sends, event -> `{payload, ack}`: a generated `ClientEvents`. */
export type EventMap = Record<string, { payload: unknown; ack: unknown }>;
/** What a server sends, event -> payload: a generated `ServerEvents`. */
export type ServerMap = Record<string, unknown>;
/** The untyped client's maps: any event, any payload, any ack. */
export type AnyEvents = Record<string, { payload: any; ack: any }>;
export type AnyServerEvents = Record<string, any>;

/** An `__error__` payload (docs/protocol.md). */
export interface ErrorPayload {
  code: string;
  message?: string;
  event?: string;
  request_id?: string;
  details?: any;
  [key: string]: unknown;
}

/** The `__connect__` payload, given to "connect" and "reconnect" listeners. */
export interface Greeting {
  conn_id: string;
  namespace?: string;
  user_id?: string | null;
  heartbeat_interval?: number;
  heartbeat_timeout?: number;
  recovered?: boolean;
  missed?: Record<string, string>;
  recovery?: { token: string | null; window?: number };
  [key: string]: unknown;
}

/** The events the client itself gives its listeners, whatever the app's maps say. */
export interface OwnEvents {
  connect: Greeting;
  reconnect: Greeting;
  /** the socket closed; the client reconnects */
  disconnect: { code: number };
  /** closed for good: `code` is the SocketSpecError code (CLOSED, CONNECT_FAILED) */
  close: { code: string };
  refreshed: { user_id: string | null; expires_at: number | null };
  auth_error: ErrorPayload;
  /** an `__error__` that answers no call */
  __error__: ErrorPayload;
}

/** The events `call` accepts: those the server answers (an ack of `never` gets no `__ack__`). */
export type AnsweredEvents<C extends EventMap> = {
  [E in keyof C]: [C[E]["ack"]] extends [never] ? never : E;
}[keyof C] & string;

/** An event's payload argument: optional when `{}` is a valid payload. */
export type PayloadArgs<P, Rest extends unknown[] = []> = {} extends P
  ? [payload?: P, ...rest: Rest]
  : [payload: P, ...rest: Rest];

/** What a listener of `event` receives: the client's own events first, then the app's. */
export type Incoming<S extends ServerMap, E> = E extends keyof OwnEvents
  ? OwnEvents[E]
  : E extends keyof S
    ? S[E]
    : never;

export type ListenedEvents<S extends ServerMap> = (keyof S | keyof OwnEvents) & string;

export interface ReconnectOptions {
  /** first delay in seconds (0.25) */
  initial?: number;
  /** largest delay in seconds (10) */
  maximum?: number;
  /** the random fraction of each delay, 1.0 is full jitter (0.5) */
  jitter?: number;
  /** retries of one outage before the client closes (unbounded) */
  attempts?: number | null;
}

export interface ConnectOptions {
  token?: string;
  /** "/" (the default) or "/x": the namespace served at `<path>/x` */
  namespace?: string;
  /** reconnect after an unexpected close; `false` turns it off (on by default) */
  reconnect?: ReconnectOptions | boolean;
  /** new credentials, on `__auth_expiring__` and after a 4001-4003 close */
  refreshToken?: () => string | Promise<string>;
  /** messages held while reconnecting (1000); past it `emit` and `call` throw */
  maxOffline?: number;
  /** the WebSocket class (globalThis.WebSocket by default) */
  WebSocket?: typeof WebSocket;
  /** sees every text frame written or received, as on the wire ("Observing the wire" below) */
  onFrame?: FrameObserver;
}

export interface CallOptions {
  /** seconds before the promise rejects with code `TIMEOUT` (10) */
  timeout?: number;
}

/**
 * An `__error__` answer, or a local failure: `TIMEOUT`, `CLOSED`, `OFFLINE_QUEUE_FULL`, or
 * `SESSION_LOST` (a call written before a cut whose reconnection got a fresh session: it may
 * have run, and the server kept no reply to resend).
 */
export class SocketSpecError extends Error {
  readonly code: string;
  readonly details: any;
  readonly payload: Payload;
  constructor(code: string, message: string, payload: Payload = {}) {
    super(`${code}: ${message}`);
    this.name = "SocketSpecError";
    this.code = code;
    this.payload = payload;
    this.details = payload.details;
  }
}

export type ClientState = "connecting" | "open" | "reconnecting" | "closed";

const TRANSITIONS: Record<ClientState, ClientState[]> = {
  connecting: ["open", "closed"],
  open: ["reconnecting", "closed"],
  reconnecting: ["open", "closed"],
  closed: [],
};

/** Closes the server meant, or protocol errors: never retried. */
const FINAL_CLOSE_CODES = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010, 4004]);
/** Bad or expired credentials: retried only with a `refreshToken`. */
const CREDENTIAL_CLOSE_CODES = new Set([4001, 4002, 4003]);
const RECOVERY_ERROR_CODES = new Set(["RECOVERY_INVALID", "RECOVERY_EXPIRED", "RECOVERY_FOREIGN"]);

/** Delay in ms before retry `n` (from 0) of one outage. */
export function backoffDelay(n: number, options: Required<ReconnectOptions>, random = Math.random): number {
  const delay = Math.min(options.maximum, options.initial * 2 ** n);
  return 1000 * (delay * (1 - options.jitter) + delay * options.jitter * random());
}

// -- Observing the wire ----------------------------------------------------------------------
// For tools that show the protocol itself, such as the server's docs page and its frame log.
// The client's own behaviour does not depend on it.

/** `"out"`: a frame the client wrote; `"in"`: one it received (before the client acts on it). */
export type FrameObserver = (direction: "in" | "out", text: string) => void;

/** `Base`, or with `onFrame`, a subclass that shows `onFrame` every text frame it carries. */
function observed(Base: typeof WebSocket, onFrame?: FrameObserver): typeof WebSocket {
  if (!onFrame) return Base;
  const see = onFrame;
  return class extends Base {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      // Added before the client's own onmessage, so a frame is seen before it is acted on.
      this.addEventListener("message", (message) => {
        if (typeof message.data === "string") see("in", message.data);
      });
    }

    send(data: Parameters<WebSocket["send"]>[0]): void {
      super.send(data);
      if (typeof data === "string") see("out", data);
    }
  };
}

interface PendingCall {
  resolve: (value: any) => void;
  reject: (error: SocketSpecError) => void;
  timer: ReturnType<typeof setTimeout>;
  frame: string;
  written: boolean;
}

/**
 * A connection that reconnects. `C` and `S` are the app's generated maps
 * (`Client<ClientEvents, ServerEvents>`); without them any event and payload is accepted.
 */
export class Client<C extends EventMap = AnyEvents, S extends ServerMap = AnyServerEvents> {
  state: ClientState = "connecting";
  connId: string | null = null;
  /** what the latest `__connect__` said: the session and every missed message came back */
  recovered = false;
  /** rooms whose history no longer covered the gap: {room: position given} */
  missed: Record<string, string> = {};
  /** the latest position received per history room, sent as `since` */
  positions: Record<string, string> = {};
  /** the `__error__` payload of a refused recovery token */
  recoveryError: Payload | null = null;
  /** calls resent after reconnections */
  resentCalls = 0;

  private ws: WebSocket | null = null;
  private token: string | undefined;
  private recoveryToken: string | null = null;
  private readonly url: string;
  private readonly options: ConnectOptions;
  private readonly backoff: Required<ReconnectOptions> | null;
  private readonly maxOffline: number;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly pending = new Map<number, PendingCall>();
  private offline: string[] = [];
  private nextAck = 1;
  private retries = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private opened: { resolve: () => void; reject: (e: Error) => void } | null = null;

  constructor(url: string, options: ConnectOptions = {}) {
    const ns = options.namespace && options.namespace !== "/" ? options.namespace : "";
    const parsed = new URL(url);
    parsed.pathname = parsed.pathname.replace(/\/$/, "") + ns;
    this.url = parsed.toString();
    this.options = options;
    this.token = options.token;
    const rc = options.reconnect ?? true;
    this.backoff = rc === false ? null : {
      initial: 0.25, maximum: 10, jitter: 0.5, attempts: null, ...(rc === true ? {} : rc),
    };
    this.maxOffline = options.maxOffline ?? 1000;
  }

  /** Opens the first connection; resolves at `__connect__` (never retried). */
  open(): Promise<this> {
    return new Promise<this>((resolve, reject) => {
      this.opened = { resolve: () => resolve(this), reject };
      this.dial();
    });
  }

  on<E extends ListenedEvents<S>>(event: E, fn: (payload: Incoming<S, E>, envelope: Envelope) => void): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  off<E extends ListenedEvents<S>>(event: E, fn?: (payload: Incoming<S, E>, envelope: Envelope) => void): this {
    if (fn) this.listeners.get(event)?.delete(fn);
    else this.listeners.delete(event);
    return this;
  }

  once<E extends ListenedEvents<S>>(event: E, fn: (payload: Incoming<S, E>, envelope: Envelope) => void): this {
    const wrapper = (payload: Incoming<S, E>, envelope: Envelope) => {
      this.off(event, wrapper);
      fn(payload, envelope);
    };
    return this.on(event, wrapper);
  }

  /** Fire and forget: no ack is asked for. */
  emit<E extends keyof C & string>(event: E, ...[payload = {}]: PayloadArgs<C[E]["payload"]>): void {
    this.send(JSON.stringify({ event, payload }));
  }

  /**
   * Resolves with the `__ack__` payload (typed by the map's `ack`); rejects with a
   * SocketSpecError (the `__error__` code). Events whose handler returns nothing get no
   * `__ack__`: the typed client refuses them here, send them with `emit`.
   */
  call<E extends AnsweredEvents<C>>(
    event: E,
    ...[payload = {}, options = {}]: PayloadArgs<C[E]["payload"], [options?: CallOptions]>
  ): Promise<C[E]["ack"]> {
    return this.request(event, payload, options);
  }

  /** Closes for good (1000); pending calls reject with `CLOSED`. */
  close(): void {
    if (this.state === "closed") return;
    this.finish(new SocketSpecError("CLOSED", "the client is closed"));
    this.ws?.close(1000);
  }

  private request(event: string, payload: unknown, { timeout = 10 }: CallOptions): Promise<any> {
    if (this.state === "closed") return Promise.reject(new SocketSpecError("CLOSED", "the client is closed"));
    const ack = this.nextAck++;
    const frame = JSON.stringify({ event, payload, ack });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ack);
        // Still waiting offline: it must not go out after its caller gave up.
        const queued = this.offline.indexOf(frame);
        if (queued >= 0) this.offline.splice(queued, 1);
        reject(new SocketSpecError("TIMEOUT", `no answer to ${event} within ${timeout} s`));
      }, timeout * 1000);
      const call: PendingCall = { resolve, reject, timer, frame, written: false };
      try {
        call.written = this.send(frame);
      } catch (error) {
        clearTimeout(timer);
        reject(error as SocketSpecError);
        return;
      }
      this.pending.set(ack, call);
    });
  }

  /** Writes now, or queues while (re)connecting; true when written. */
  private send(frame: string): boolean {
    if (this.state === "closed") throw new SocketSpecError("CLOSED", "the client is closed");
    if (this.state === "open" && this.ws && this.ws.readyState === 1) {
      this.ws.send(frame);
      return true;
    }
    if (this.offline.length >= this.maxOffline) {
      throw new SocketSpecError("OFFLINE_QUEUE_FULL", `${this.offline.length} messages wait for the reconnection (maxOffline)`);
    }
    this.offline.push(frame);
    return false;
  }

  private transition(to: ClientState): void {
    if (!TRANSITIONS[this.state].includes(to)) {
      throw new Error(`illegal transition from ${this.state} to ${to}`);
    }
    this.state = to;
  }

  /** Observing the wire: writes `text` exactly as given, no envelope and no ack bookkeeping
   * (an answer to it reaches only `onFrame`), or queues it while (re)connecting; true when
   * written. The escape hatch of a page that shows what the server answers to any frame, even
   * one that is not JSON. */
  sendRaw(text: string): boolean {
    return this.send(text);
  }

  private dial(): void {
    const url = new URL(this.url);
    if (this.token !== undefined) url.searchParams.set("token", this.token);
    if (this.recoveryToken) {
      url.searchParams.set("recover", this.recoveryToken);
      if (Object.keys(this.positions).length) url.searchParams.set("since", JSON.stringify(this.positions));
    }
    const Impl = observed(this.options.WebSocket ?? globalThis.WebSocket, this.options.onFrame);
    const ws = new Impl(url.toString());
    this.ws = ws;
    ws.onmessage = (message) => {
      if (typeof message.data === "string") this.receive(message.data);
    };
    ws.onclose = (closed) => {
      if (this.ws === ws) this.closed(closed.code);
    };
  }

  private receive(text: string): void {
    let envelope: Envelope;
    try {
      envelope = JSON.parse(text);
    } catch {
      return; // the server only sends JSON; a broken frame is not the app's event
    }
    const payload = envelope.payload ?? {};
    if (envelope.room !== undefined && envelope.pos !== undefined) this.positions[envelope.room] = envelope.pos;
    switch (envelope.event) {
      case "__connect__":
        return this.greeted(payload);
      case "__ping__":
        this.ws?.send(JSON.stringify({ event: "__pong__", payload: {} }));
        return;
      case "__recovery__":
        this.recoveryToken = payload.token ?? null;
        return;
      case "__server_shutdown__":
        if (payload.recovery?.token) this.recoveryToken = payload.recovery.token;
        break;
      case "__auth_expiring__":
        void this.refresh();
        break;
      case "__ack__":
        return this.settle(envelope.ack, (call) => call.resolve(payload));
      case "__error__":
        if (RECOVERY_ERROR_CODES.has(payload.code) && payload.event === "__connect__") {
          this.recoveryError = payload;
          this.positions = {};
        }
        if (envelope.ack !== undefined && this.pending.has(envelope.ack as number)) {
          return this.settle(envelope.ack, (call) => call.reject(new SocketSpecError(payload.code, payload.message ?? "", payload)));
        }
        break;
    }
    this.dispatch(envelope.event, payload, envelope);
  }

  private greeted(payload: any): void {
    const reconnected = this.state === "reconnecting";
    // A recovered session keeps its conn_id; a new one (a refused token, recovery off) is fresh.
    const fresh = reconnected && payload.conn_id !== this.connId;
    this.connId = payload.conn_id;
    this.recovered = Boolean(payload.recovered);
    this.missed = payload.missed ?? {};
    this.recoveryToken = payload.recovery?.token ?? null;
    this.recoveryError = null;
    this.retries = 0;
    this.transition("open");
    if (fresh) this.positions = {}; // its rooms are gone
    const ws = this.ws!;
    // Calls in flight go first with their own ack id: the server answers them from the stored
    // reply. A fresh session has none: resent, a call that already ran would run again.
    for (const [ack, call] of this.pending) {
      if (call.written && fresh) {
        this.settle(ack, (lost) => lost.reject(new SocketSpecError(
          "SESSION_LOST", "the call was sent before the connection was cut and the session did not come back",
        )));
      } else if (call.written) {
        ws.send(call.frame);
        this.resentCalls++;
      }
      call.written = true;
    }
    const queued = this.offline;
    this.offline = [];
    for (const frame of queued) ws.send(frame);
    this.opened?.resolve();
    this.opened = null;
    this.dispatch(reconnected ? "reconnect" : "connect", payload, { event: "__connect__", payload });
  }

  private settle(ack: unknown, fn: (call: PendingCall) => void): void {
    const call = this.pending.get(ack as number);
    if (!call) return;
    this.pending.delete(ack as number);
    clearTimeout(call.timer);
    fn(call);
  }

  private dispatch(event: string, payload: any, envelope: Envelope): void {
    for (const fn of [...(this.listeners.get(event) ?? [])]) fn(payload, envelope);
  }

  private async refresh(): Promise<boolean> {
    if (!this.options.refreshToken) return false;
    try {
      this.token = await this.options.refreshToken();
    } catch {
      return false;
    }
    if (this.state === "open") {
      // The answer reaches the app as "refreshed" ({user_id, expires_at}) or "auth_error".
      this.request("__refresh_auth__", { token: this.token }, {}).then(
        (payload) => this.dispatch("refreshed", payload, { event: "__ack__", payload }),
        (error: SocketSpecError) => this.dispatch("auth_error", error.payload, { event: "__error__", payload: error.payload }),
      );
    }
    return true;
  }

  private async closed(code: number): Promise<void> {
    this.ws = null;
    if (this.state === "closed") return;
    if (this.opened) {
      const error = new SocketSpecError("CONNECT_FAILED", `the connection closed with ${code}`);
      this.opened.reject(error);
      this.opened = null;
      return this.finish(error);
    }
    let retry = this.backoff !== null && !FINAL_CLOSE_CODES.has(code);
    if (retry && CREDENTIAL_CLOSE_CODES.has(code)) retry = await this.refresh();
    const attempts = this.backoff?.attempts;
    if (!retry || (attempts != null && this.retries >= attempts)) {
      return this.finish(new SocketSpecError("CLOSED", `the connection closed with ${code}`));
    }
    if (this.state === "open") {
      this.transition("reconnecting");
      this.dispatch("disconnect", { code }, { event: "disconnect" });
    }
    const delay = backoffDelay(this.retries++, this.backoff!);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.state !== "closed") this.dial();
    }, delay);
  }

  private finish(error: SocketSpecError): void {
    if (this.state === "closed") return;
    this.transition("closed");
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.reject(error);
    }
    this.pending.clear();
    this.offline = [];
    // close() before the greeting: the promise of open() / connect() settles too.
    this.opened?.reject(error);
    this.opened = null;
    this.dispatch("close", { code: error.code }, { event: "close" });
  }
}

/** Opens a connection to `url` (ws:// or wss://) and resolves at the server's greeting. */
export function connect<C extends EventMap = AnyEvents, S extends ServerMap = AnyServerEvents>(
  url: string,
  options: ConnectOptions = {},
): Promise<Client<C, S>> {
  return new Client<C, S>(url, options).open();
}
