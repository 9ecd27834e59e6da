// Tests of @virtkey/control against a real `virtkey run --control`.
// VIRTKEY_BIN names the binary; without it the test builds one with go.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, existsSync, chmodSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { generateKeyPairSync, createPublicKey } from "node:crypto";
import { Control, ControlError, toBase64Url, fromBase64Url } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "virtkey-js-"));
chmodSync(dir, 0o700);
let bin = process.env.VIRTKEY_BIN;
const procs = [];

async function waitFor(ctl) {
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      return await ctl.keys();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function startKey(name, controlArgs) {
  const p = spawn(bin, [
    "run", "--transport", "udp", "--udp-listen", "127.0.0.1:0", "--state-dir", join(dir, name),
    "--profile", "browser-test", "--control-allow-export", "--log-level", "warn", ...controlArgs,
  ], { stdio: ["ignore", "inherit", "inherit"] });
  procs.push(p);
  return p;
}

let ctl;
before(async () => {
  if (!bin) {
    bin = join(dir, "virtkey");
    execFileSync("go", ["build", "-o", bin, "./cmd/virtkey"], { cwd: join(here, "..", "..", ".."), stdio: "inherit" });
  }
  const sock = join(dir, "ctl", "control.sock");
  startKey("unix", ["--control", `unix:${sock}`]);
  ctl = new Control(`unix:${sock}`);
  await waitFor(ctl);
});

after(() => {
  ctl?.close();
  for (const p of procs) p.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

function es256() {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    pkcs8: toBase64Url(privateKey.export({ format: "der", type: "pkcs8" })),
    spki: toBase64Url(publicKey.export({ format: "der", type: "spki" })),
  };
}

test("the default key and its settings", async () => {
  const keys = await ctl.keys();
  assert.equal(keys.length, 1);
  assert.equal(keys[0].id, "default");
  assert.match(keys[0].udpAddr, /^127\.0\.0\.1:\d+$/);
  const key = ctl.key();
  assert.equal((await key.setUserVerified(false)).isUserVerified, false);
  assert.equal((await key.setUserVerified(true)).isUserVerified, true);
  assert.equal((await key.setPresence("manual")).presence, "manual");
  assert.deepEqual(await key.pendingPresence(), []);
  assert.equal((await key.setPresence("auto")).presence, "auto");
  const ov = await key.setOverrides({ isBadUV: true });
  assert.deepEqual(ov.overrides, { isBogusSignature: false, isBadUV: true, isBadUP: false });
  await key.setOverrides({});
  assert.equal((await key.setPIN("123456")).pinSet, true);
  assert.equal((await key.removePIN()).pinSet, false);
});

test("credentials: WebDriver and Playwright shapes, props, delete", async () => {
  const key = ctl.key();
  const events = key.events();
  await events.ready;
  const k = es256();
  const id = toBase64Url(Buffer.from("js-credential-0001"));
  const c = await key.addCredential({
    credentialId: id, rpId: "example.com", isResidentCredential: true, privateKey: k.pkcs8,
    userHandle: toBase64Url(Buffer.from("user")), signCount: 5, userName: "alice",
  });
  assert.equal(c.credentialId, id);
  assert.equal(c.publicKey, k.spki);
  assert.equal(c.signCount, 5);
  const ev = await events.waitFor((e) => e.type === "credentialAdded");
  assert.equal(ev.credentialId, id);
  assert.equal(ev.rpId, "example.com");

  // Standard base64 in, base64url out.
  const std = Buffer.from("js-credential-0002\xfb\xff").toString("base64");
  const c2 = await key.addCredential({ credentialId: std, rpId: "example.com", privateKey: k.pkcs8 });
  assert.equal(c2.credentialId, toBase64Url(fromBase64Url(std)));

  const pw = await key.playwrightCredentials();
  const mine = pw.find((p) => p.id === id);
  assert.equal(mine.privateKey, k.pkcs8);
  assert.equal(mine.publicKey, k.spki);
  // Playwright's shape goes back in unchanged.
  await key.deleteCredential(id);
  const back = await key.addCredential(mine);
  assert.equal(back.isResidentCredential, true);
  assert.equal(back.credentialId, id);

  const p = await key.setCredentialProps(id, { signCount: 1, backupEligibility: true, userName: "bob" });
  assert.equal(p.signCount, 1);
  assert.equal(p.backupEligibility, true);
  assert.equal(p.userName, "bob");
  assert.equal((await key.credential(id)).userName, "bob");

  await key.deleteCredential(id);
  await assert.rejects(key.credential(id), (e) => e instanceof ControlError && e.status === 404);
  await key.deleteCredentials();
  assert.deepEqual(await key.credentials(), []);
  events.close();
});

test("keys added and removed; bad requests", async () => {
  const k = await ctl.addKey({ attach: "udp", protocol: "ctap2", hasUserVerification: true });
  assert.equal(k.id, "key-1");
  assert.equal(k.ephemeral, true);
  const created = await ctl.key(k.id).addCredential({ rpId: "gen.example", isResidentCredential: true, userHandle: "dQ", algorithm: -8 });
  assert.equal(created.algorithm, -8);
  assert.ok(created.privateKey);
  const events = ctl.key(k.id).events();
  await events.ready;
  await ctl.key(k.id).replug();
  assert.equal((await events.waitFor((e) => e.type === "replug")).type, "replug");
  await ctl.deleteKey(k.id);
  assert.equal(await events.next(5000), undefined); // the stream ends with the key
  await assert.rejects(ctl.deleteKey("default"), (e) => e.status === 409);
  await assert.rejects(ctl.addKey({ attach: "usb" }), (e) => e.status === 400 && /attach/.test(e.message));
  await assert.rejects(ctl.key().setPresence("sometimes"), (e) => e.status === 400);
  const doc = await ctl.openAPI();
  assert.equal(doc.openapi, "3.0.3");
});

test("TCP with a bearer token", async () => {
  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, "js-token-0123456789abcdef\n", { mode: 0o600 });
  const port = 20000 + Math.floor(Math.random() * 20000);
  startKey("tcp", ["--control", `tcp:127.0.0.1:${port}`, "--control-token-file", tokenFile]);
  const good = new Control(`tcp:127.0.0.1:${port}`, { tokenFile });
  try {
    const keys = await waitFor(good);
    assert.equal(keys[0].id, "default");
    const bad = new Control(`tcp:127.0.0.1:${port}`, { token: "wrong-wrong-wrong-wrong" });
    await assert.rejects(bad.keys(), (e) => e.status === 401);
    bad.close();
  } finally {
    good.close();
  }
});
