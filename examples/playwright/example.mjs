// The Playwright example: headless Chromium (the system's, through
// playwright-core) signs up and in on a demo site (demo-rp) with a passkey
// on a real virtual security key — virtkey over uhid — and the test steers
// the key through virtkey's control API (@virtkey/control):
//
//   1. sign up: Chromium makes a passkey on the key; the site verifies it
//   2. sign in with that discoverable passkey
//   3. seed a credential through the API (and the matching account on the
//      site), then sign in with it (the key picks the newest passkey)
//   4. turn user verification off: the site's sign-in fails
//   5. delete the credentials through the API: sign-in fails
//
// Environment: VIRTKEY_CONTROL (unix:PATH of `virtkey run --control`),
// RP_URL (default http://localhost:8080/), CHROMIUM (default
// /usr/bin/chromium), EXAMPLE_SLOW=1 for machines where Chromium needs
// minutes (qemu without KVM). Prints "EXAMPLE step PASS|FAIL detail" lines;
// exits 1 on the first failure.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { chromium } from "playwright-core";
import { Control, toBase64Url } from "@virtkey/control";

const slow = process.env.EXAMPLE_SLOW === "1";
const rpURL = process.env.RP_URL ?? "http://localhost:8080/";
const longWait = slow ? 240_000 : 60_000; // a ceremony that should succeed
const refuseWait = slow ? 40_000 : 10_000; // the page's own abort for one that should not
// Under qemu without KVM on a busy host, Chromium can be slow enough that
// the key drops a half-sent CTAPHID message (MSG_TIMEOUT) and the ceremony
// fails; a ceremony that should succeed gets that many tries there.
const tries = slow ? 3 : 1;

const ctl = new Control(process.env.VIRTKEY_CONTROL);
const key = ctl.key(); // "default": the key virtkey run serves

function report(step, ok, detail) {
  console.log(`EXAMPLE ${step} ${ok ? "PASS" : "FAIL"} ${detail}`);
  if (!ok) process.exitCode = 1;
  return ok;
}

// until clicks id until the page says want (at most tries times).
async function until(page, id, want) {
  let s;
  for (let i = 1; i <= tries; i++) {
    s = await click(page, id);
    if (s === want) return i > 1 ? `${s} (try ${i})` : s;
    console.log(`# ${id} try ${i}: ${s}`);
  }
  return s;
}

// click presses a button and waits for the page's "ok: …" or "error: …".
async function click(page, id) {
  await page.evaluate(() => { document.getElementById("status").textContent = "clicked"; });
  await page.click(`#${id}`);
  const handle = await page.waitForFunction(
    () => /^(ok|error):/.test(document.getElementById("status").textContent) && document.getElementById("status").textContent,
    null, { timeout: longWait + refuseWait },
  );
  return handle.jsonValue();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  timeout: slow ? 600_000 : 60_000,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(longWait);
  page.setDefaultNavigationTimeout(slow ? 600_000 : 60_000);
  const events = key.events();
  await events.ready;
  const t0 = Date.now();
  await page.goto(`${rpURL}?timeout=${longWait}`);
  report("page-load", true, `${Date.now() - t0} ms`);

  // 1. Sign up.
  let s = await until(page, "signup", "ok: registered alice");
  const added = await events.waitFor((e) => e.type === "credentialAdded", 5000).catch(() => null);
  if (!report("sign-up", s.startsWith("ok: registered alice") && added !== null, `${s}; key event ${added?.type} ${added?.credentialId ?? ""}`)) throw new Error(s);

  // 2. Sign in with the discoverable passkey.
  s = await until(page, "signin", "ok: signed in as alice");
  const asserted = await events.waitFor((e) => e.type === "credentialAsserted", 5000).catch(() => null);
  if (!report("sign-in", s.startsWith("ok: signed in as alice"), `${s}; signCount ${asserted?.signCount}`)) throw new Error(s);

  // 3. Seed a credential for a second account and sign in with it.
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const userHandle = toBase64Url(randomBytes(16));
  const seeded = await key.addCredential({
    rpId: new URL(rpURL).hostname, isResidentCredential: true, userHandle, userName: "bob",
    privateKey: toBase64Url(privateKey.export({ format: "der", type: "pkcs8" })), signCount: 7,
  });
  const r = await fetch(new URL("/test/users", rpURL), {
    method: "POST",
    body: JSON.stringify({ name: "bob", userHandle, credentialId: seeded.credentialId, publicKey: toBase64Url(publicKey.export({ format: "der", type: "spki" })), signCount: 7 }),
  });
  if (!r.ok) throw new Error(`seeding the site: ${await r.text()}`);
  s = await until(page, "signin", "ok: signed in as bob");
  if (!report("seeded-sign-in", s.startsWith("ok: signed in as bob"), s)) throw new Error(s);

  // 4. User verification off: the site requires it, the sign-in fails.
  await page.goto(`${rpURL}?timeout=${refuseWait}`);
  await key.setUserVerified(false);
  s = await click(page, "signin");
  report("uv-off-refused", s.startsWith("error:"), s);
  await key.setUserVerified(true);

  // 5. Delete the credentials: sign-in fails.
  await key.deleteCredentials();
  s = await click(page, "signin");
  report("deleted-refused", s.startsWith("error:"), s);
  const left = await key.credentials();
  report("no-credentials-left", left.length === 0, `${left.length} credentials`);
  events.close();
} catch (e) {
  report("example", false, String(e?.message ?? e).split("\n")[0]);
} finally {
  await browser.close();
  ctl.close();
}
