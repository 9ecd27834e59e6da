/**
 * Client of virtkey's control API (`virtkey run --control ...`).
 *
 * ```ts
 * import { Control } from "@virtkey/control";
 * const ctl = new Control("unix:/tmp/vk/control.sock");
 * const key = ctl.key(); // "default", the key virtkey run serves
 * await key.setUserVerified(false);
 * for await (const ev of key.events()) { ... }
 * ```
 *
 * No runtime dependencies: node:http speaks to the Unix socket or the TCP
 * endpoint. Binary values (credential ids, user handles, keys) are base64url
 * strings, as on the wire; see toBase64Url/fromBase64Url.
 */
import * as http from "node:http";
import { readFileSync } from "node:fs";

export type Protocol = "ctap2_1" | "ctap2" | "ctap1/u2f";
export type Attach = "udp" | "uhid";
export type PresenceMode = "auto" | "deny" | "manual" | "timeout";

/** POST /v1/keys: a WebDriver Authenticator Configuration plus how to attach the key. */
export interface KeyConfig {
  protocol?: Protocol;
  transport?: "usb";
  hasResidentKey?: boolean;
  hasUserVerification?: boolean;
  isUserConsenting?: boolean;
  isUserVerified?: boolean;
  extensions?: string[];
  defaultBackupEligibility?: boolean;
  defaultBackupState?: boolean;
  attach: Attach;
  /** UDP address of an udp key (default 127.0.0.1:0). */
  udpListen?: string;
  /** State directory; absent: an ephemeral one removed with the key. */
  stateDir?: string;
  /** Open a stateDir whose state.db is an older copy (virtkey run --accept-rollback). */
  acceptRollback?: boolean;
  presence?: PresenceMode;
  /** Chromium DevTools' VirtualAuthenticatorOptions, accepted for porting. */
  ctap2Version?: "ctap2_0" | "ctap2_1";
  hasLargeBlob?: boolean;
  hasCredBlob?: boolean;
  hasMinPinLength?: boolean;
  hasPrf?: boolean;
  /** false: presence "manual" (when presence is not given). */
  automaticPresenceSimulation?: boolean;
}

export interface Overrides {
  isBogusSignature?: boolean;
  isBadUV?: boolean;
  isBadUP?: boolean;
}

export interface KeyInfo {
  id: string;
  attach: Attach;
  udpAddr?: string;
  hidraw?: string;
  protocol: Protocol;
  transport: string;
  hasResidentKey: boolean;
  hasUserVerification: boolean;
  isUserVerified: boolean;
  isUserConsenting: boolean;
  extensions: string[];
  defaultBackupEligibility: boolean;
  defaultBackupState: boolean;
  pinSet: boolean;
  presence: PresenceMode;
  overrides: Required<Overrides>;
  stateDir?: string;
  ephemeral: boolean;
  keystore: "software" | "tpm";
  exportAllowed: boolean;
}

/** POST /v1/keys/{id}/credentials: WebDriver Credential Parameters (base64url strings). */
export interface CredentialParams {
  credentialId?: string;
  isResidentCredential?: boolean;
  rpId: string;
  /** PKCS#8 DER, base64url: ES256, EdDSA, ES384 or RS256. Absent: the key makes one. */
  privateKey?: string;
  userHandle?: string;
  signCount?: number;
  largeBlob?: string;
  backupEligibility?: boolean;
  backupState?: boolean;
  userName?: string;
  userDisplayName?: string;
  credProtect?: 1 | 2 | 3;
  hmacSecret?: boolean;
  /** COSE algorithm of a generated key (-7 ES256, -8 EdDSA, -35 ES384, -257 RS256). */
  algorithm?: number;
}

/** Playwright's context.credentials shape. */
export interface PlaywrightCredential {
  id: string;
  rpId: string;
  userHandle: string;
  privateKey: string;
  publicKey: string;
}

export interface Credential {
  credentialId: string;
  isResidentCredential: boolean;
  rpId: string;
  privateKey?: string;
  userHandle?: string;
  signCount: number;
  largeBlob?: string;
  backupEligibility: boolean;
  backupState: boolean;
  userName?: string;
  userDisplayName?: string;
  credProtect?: number;
  hmacSecret: boolean;
  publicKey: string;
  algorithm: number;
}

export interface CredentialProps {
  backupEligibility?: boolean;
  backupState?: boolean;
  signCount?: number;
  userName?: string;
  userDisplayName?: string;
}

export interface PendingPresence {
  requestId: string;
  op: string;
  rpId: string;
  userName?: string;
  since: string;
}

export type EventType =
  | "credentialAdded" | "credentialAsserted" | "credentialUpdated" | "credentialDeleted"
  | "presenceRequested" | "presenceAnswered" | "pinSet" | "pinFailed" | "reset" | "replug"
  | "eventsDropped";

export interface KeyEvent {
  type: EventType;
  time: string;
  credentialId?: string;
  rpId?: string;
  userHandle?: string;
  signCount?: number;
  /** Authenticator-data flags: UP 0x01, UV 0x04, BE 0x08, BS 0x10, AT 0x40, ED 0x80. */
  flags?: number;
  op?: string;
  status?: string;
  requestId?: string;
  dropped?: number;
}

/** An answer with an error status. */
export class ControlError extends Error {
  constructor(readonly status: number, message: string) {
    super(`control API: ${status}: ${message}`);
    this.name = "ControlError";
  }
}

export interface ControlOptions {
  /** Bearer token (TCP endpoints). */
  token?: string;
  /** File holding the bearer token (first line). */
  tokenFile?: string;
}

/** base64url without padding. */
export function toBase64Url(b: Uint8Array): string {
  return Buffer.from(b).toString("base64url");
}

/** Decodes standard or URL base64, padded or not. */
export function fromBase64Url(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s.replace(/\+/g, "-").replace(/\//g, "_"), "base64url"));
}

interface Endpoint {
  socketPath?: string;
  host?: string;
  port?: number;
}

function parseAddress(address: string): Endpoint {
  const i = address.indexOf(":");
  const network = address.slice(0, i);
  const rest = address.slice(i + 1);
  if (i < 0 || rest === "") throw new Error(`control address ${JSON.stringify(address)}: want unix:PATH or tcp:HOST:PORT`);
  if (network === "unix") return { socketPath: rest };
  if (network === "tcp") {
    const j = rest.lastIndexOf(":");
    const host = rest.slice(0, j).replace(/^\[|\]$/g, "");
    const port = Number(rest.slice(j + 1));
    if (j < 0 || !Number.isInteger(port)) throw new Error(`control address ${JSON.stringify(address)}: want tcp:HOST:PORT`);
    return { host, port };
  }
  throw new Error(`control address ${JSON.stringify(address)}: want unix:PATH or tcp:HOST:PORT`);
}

/** A control endpoint. */
export class Control {
  private readonly ep: Endpoint;
  private readonly token?: string;
  private readonly agent: http.Agent;

  /** @param address "unix:PATH" or "tcp:HOST:PORT" (default $VIRTKEY_CONTROL). */
  constructor(address: string | undefined = process.env.VIRTKEY_CONTROL, opts: ControlOptions = {}) {
    if (!address) throw new Error("no control address (pass one or set VIRTKEY_CONTROL)");
    this.ep = parseAddress(address);
    let token = opts.token;
    if (token === undefined && opts.tokenFile) {
      token = readFileSync(opts.tokenFile, "utf8").split("\n")[0].trim();
    }
    this.token = token;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  }

  /** Closes idle connections. */
  close(): void {
    this.agent.destroy();
  }

  /** @internal */
  open(method: string, path: string, body?: unknown): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const headers: Record<string, string> = {};
      if (data) {
        headers["content-type"] = "application/json";
        headers["content-length"] = String(data.length);
      }
      if (this.token) headers["authorization"] = `Bearer ${this.token}`;
      const req = http.request(
        { ...this.ep, method, path, headers, agent: this.agent },
        (res) => {
          if ((res.statusCode ?? 500) < 400) return resolve(res);
          readAll(res).then((text) => {
            let msg = text.trim();
            try {
              msg = JSON.parse(text).error ?? msg;
            } catch {
              // not JSON: keep the text
            }
            reject(new ControlError(res.statusCode ?? 500, msg));
          }, reject);
        },
      );
      req.on("error", reject);
      req.end(data);
    });
  }

  /** @internal */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.open(method, path, body);
    const text = await readAll(res);
    return (text === "" ? undefined : JSON.parse(text)) as T;
  }

  /** Every key. */
  keys(): Promise<KeyInfo[]> {
    return this.call("GET", "/v1/keys");
  }

  /** Adds a key; the answer has its udpAddr or hidraw node. */
  addKey(cfg: KeyConfig): Promise<KeyInfo> {
    return this.call("POST", "/v1/keys", cfg);
  }

  /** Unplugs and removes a key. */
  deleteKey(id: string): Promise<void> {
    return this.call("DELETE", `/v1/keys/${encodeURIComponent(id)}`);
  }

  /** The OpenAPI description. */
  openAPI(): Promise<Record<string, unknown>> {
    return this.call("GET", "/v1/openapi.json");
  }

  /** A handle on key id (no request is made). */
  key(id = "default"): Key {
    return new Key(this, id);
  }
}

function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    res.on("error", reject);
  });
}

/** One key's routes. */
export class Key {
  private readonly path: string;
  constructor(private readonly ctl: Control, readonly id: string) {
    this.path = `/v1/keys/${encodeURIComponent(id)}`;
  }

  private cred(id: string): string {
    return `${this.path}/credentials/${encodeURIComponent(id)}`;
  }

  info(): Promise<KeyInfo> {
    return this.ctl.call("GET", this.path);
  }
  addCredential(p: CredentialParams | PlaywrightCredential): Promise<Credential> {
    return this.ctl.call("POST", `${this.path}/credentials`, p);
  }
  credentials(): Promise<Credential[]> {
    return this.ctl.call("GET", `${this.path}/credentials`);
  }
  playwrightCredentials(): Promise<PlaywrightCredential[]> {
    return this.ctl.call("GET", `${this.path}/credentials?format=playwright`);
  }
  credential(id: string): Promise<Credential> {
    return this.ctl.call("GET", this.cred(id));
  }
  deleteCredential(id: string): Promise<void> {
    return this.ctl.call("DELETE", this.cred(id));
  }
  deleteCredentials(): Promise<void> {
    return this.ctl.call("DELETE", `${this.path}/credentials`);
  }
  setCredentialProps(id: string, p: CredentialProps): Promise<Credential> {
    return this.ctl.call("POST", `${this.cred(id)}/props`, p);
  }
  setUserVerified(isUserVerified: boolean): Promise<KeyInfo> {
    return this.ctl.call("POST", `${this.path}/uv`, { isUserVerified });
  }
  setPresence(mode: PresenceMode): Promise<KeyInfo> {
    return this.ctl.call("POST", `${this.path}/presence`, { mode });
  }
  pendingPresence(): Promise<PendingPresence[]> {
    return this.ctl.call("GET", `${this.path}/presence/pending`);
  }
  answerPresence(requestId: string, approve: boolean): Promise<void> {
    return this.ctl.call("POST", `${this.path}/presence/pending/${encodeURIComponent(requestId)}`, { approve });
  }
  setOverrides(o: Overrides): Promise<KeyInfo> {
    return this.ctl.call("POST", `${this.path}/overrides`, o);
  }
  setPIN(pin: string): Promise<KeyInfo> {
    return this.ctl.call("POST", `${this.path}/pin`, { pin });
  }
  removePIN(): Promise<KeyInfo> {
    return this.ctl.call("DELETE", `${this.path}/pin`);
  }
  replug(): Promise<KeyInfo> {
    return this.ctl.call("POST", `${this.path}/replug`);
  }

  /**
   * Subscribes to the key's events. The subscription is in place once
   * `ready` resolves; iterate the stream with `for await`, end it with
   * close() (or by leaving the loop).
   */
  events(): EventStream {
    return new EventStream(this.ctl.open("GET", `${this.path}/events`));
  }
}

/** The NDJSON event stream as an async iterable. */
export class EventStream implements AsyncIterable<KeyEvent> {
  /** Resolves when the server has accepted the subscription. */
  readonly ready: Promise<void>;
  private res?: http.IncomingMessage;
  private queue: KeyEvent[] = [];
  private waiters: Array<(r: IteratorResult<KeyEvent>) => void> = [];
  private failers: Array<(e: unknown) => void> = [];
  private ended = false;
  private error?: unknown;
  private buf = "";

  constructor(opening: Promise<http.IncomingMessage>) {
    this.ready = opening.then((res) => {
      this.res = res;
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => this.feed(chunk));
      res.on("end", () => this.finish());
      res.on("error", (e) => this.finish(e));
      res.on("close", () => this.finish());
    });
    this.ready.catch((e) => this.finish(e));
  }

  private feed(chunk: string): void {
    this.buf += chunk;
    let i: number;
    while ((i = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, i).trim();
      this.buf = this.buf.slice(i + 1);
      if (line === "") continue;
      const ev = JSON.parse(line) as KeyEvent;
      const w = this.waiters.shift();
      this.failers.shift();
      if (w) w({ value: ev, done: false });
      else this.queue.push(ev);
    }
  }

  private finish(err?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = err;
    for (const w of this.waiters) w({ value: undefined, done: true });
    this.waiters = [];
    this.failers = [];
  }

  /** The next event, or undefined when the stream ended. */
  async next(timeoutMs?: number): Promise<KeyEvent | undefined> {
    const r = await this.nextResult(timeoutMs);
    return r.done ? undefined : r.value;
  }

  private nextResult(timeoutMs?: number): Promise<IteratorResult<KeyEvent>> {
    const ev = this.queue.shift();
    if (ev) return Promise.resolve({ value: ev, done: false });
    if (this.ended) {
      if (this.error) return Promise.reject(this.error);
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (r: IteratorResult<KeyEvent>) => {
        if (timer) clearTimeout(timer);
        resolve(r);
      };
      this.waiters.push(done);
      this.failers.push(reject);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const i = this.waiters.indexOf(done);
          if (i >= 0) {
            this.waiters.splice(i, 1);
            this.failers.splice(i, 1);
          }
          reject(new Error(`no event within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /** Waits for the first event that matches pred (skipping the others). */
  async waitFor(pred: (ev: KeyEvent) => boolean, timeoutMs = 10000): Promise<KeyEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching event within ${timeoutMs} ms`);
      const ev = await this.next(left);
      if (!ev) throw new Error("event stream ended");
      if (pred(ev)) return ev;
    }
  }

  /** Ends the subscription. */
  close(): void {
    this.res?.destroy();
    this.finish();
  }

  [Symbol.asyncIterator](): AsyncIterator<KeyEvent> {
    return {
      next: () => this.nextResult(),
      return: async () => {
        this.close();
        return { value: undefined, done: true };
      },
    };
  }
}
