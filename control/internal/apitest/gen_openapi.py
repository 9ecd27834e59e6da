#!/usr/bin/python3
"""Writes control/openapi.json, the OpenAPI 3 description of /v1.

Edit the schemas and operations here, run this script, and commit both; the
control package's tests (TestOpenAPIRoutes, TestOpenAPISchemas, and the live
checks through package apitest) keep the document true to the server.
"""
import os
import json
B64 = {"type": "string", "format": "base64url", "description": "base64url without padding in responses; standard or URL base64, padded or not, in requests"}
def b64(desc): d = dict(B64); d["description"] = desc + " (" + B64["description"] + ")"; return d
def ref(n): return {"$ref": "#/components/schemas/" + n}
S = {}
S["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
S["Overrides"] = {"type": "object", "description": "Response override bits (Chromium DevTools WebAuthn.setResponseOverrideBits). Absent fields are false.",
  "properties": {"isBogusSignature": {"type": "boolean", "description": "assertions carry an invalid signature"},
                 "isBadUV": {"type": "boolean", "description": "the UV flag is cleared in authenticator data"},
                 "isBadUP": {"type": "boolean", "description": "the UP flag is cleared in authenticator data"}}}
PM = {"type": "string", "enum": ["auto", "deny", "manual", "timeout"]}
S["PresenceMode"] = dict(PM, description="auto: approve at once; deny: refuse (CTAP2_ERR_OPERATION_DENIED); manual: queue for the test to answer; timeout: never answer (KEEPALIVE UPNEEDED until the client cancels or the presence timeout, 30 s)")
S["KeyConfig"] = {"type": "object", "required": ["attach"], "description": "A W3C WebDriver Authenticator Configuration plus how to attach the key. Unknown fields are rejected.",
  "properties": {
    "protocol": {"type": "string", "enum": ["ctap2_1", "ctap2", "ctap1/u2f"], "default": "ctap2_1"},
    "transport": {"type": "string", "enum": ["usb"], "default": "usb"},
    "hasResidentKey": {"type": "boolean", "default": True},
    "hasUserVerification": {"type": "boolean", "default": True, "description": "built-in user verification (getInfo options.uv)"},
    "isUserConsenting": {"type": "boolean", "default": True, "description": "false: presence mode deny"},
    "isUserVerified": {"type": "boolean", "default": True},
    "extensions": {"type": "array", "items": {"type": "string"}, "description": "extensions the key must support; the key reports the ones it has"},
    "defaultBackupEligibility": {"type": "boolean", "default": False},
    "defaultBackupState": {"type": "boolean", "default": False},
    "attach": {"type": "string", "enum": ["udp", "uhid"]},
    "udpListen": {"type": "string", "default": "127.0.0.1:0", "description": "UDP address of an udp key"},
    "stateDir": {"type": "string", "description": "state directory; absent: an ephemeral one, removed with the key"},
    "presence": ref("PresenceMode"),
    "ctap2Version": {"type": "string", "enum": ["ctap2_0", "ctap2_1"], "description": "Chromium DevTools' option, accepted for porting; virtkey keys speak CTAP 2.1 and 2.0"},
    "hasLargeBlob": {"type": "boolean", "description": "Chromium DevTools' option: true checks the key has large blobs (it always has); false is ignored"},
    "hasCredBlob": {"type": "boolean", "description": "as hasLargeBlob, for credBlob"},
    "hasMinPinLength": {"type": "boolean", "description": "as hasLargeBlob, for minPinLength"},
    "hasPrf": {"type": "boolean", "description": "as hasLargeBlob, for hmac-secret (PRF)"},
    "automaticPresenceSimulation": {"type": "boolean", "description": "Chromium DevTools' option: false is presence manual (when presence is not given)"}}}
S["Key"] = {"type": "object", "required": ["id", "attach", "protocol", "transport", "hasResidentKey", "hasUserVerification", "isUserVerified", "isUserConsenting", "extensions", "defaultBackupEligibility", "defaultBackupState", "pinSet", "presence", "overrides", "ephemeral", "keystore", "exportAllowed"],
  "properties": {
    "id": {"type": "string", "description": "\"default\" for the key virtkey run serves; key-N for keys added through the API"},
    "attach": {"type": "string", "enum": ["udp", "uhid", "inproc"], "description": "inproc: a Go program's in-process key (package inproc) it registered"},
    "udpAddr": {"type": "string", "description": "the bound UDP address (udp keys)"},
    "hidraw": {"type": "string", "description": "the /dev/hidraw node the kernel made (uhid keys), once it exists"},
    "protocol": {"type": "string"}, "transport": {"type": "string"},
    "hasResidentKey": {"type": "boolean"}, "hasUserVerification": {"type": "boolean"},
    "isUserVerified": {"type": "boolean"}, "isUserConsenting": {"type": "boolean"},
    "extensions": {"type": "array", "items": {"type": "string"}},
    "defaultBackupEligibility": {"type": "boolean"}, "defaultBackupState": {"type": "boolean"},
    "pinSet": {"type": "boolean"},
    "presence": {"type": "string", "description": "auto, deny, manual or timeout; for the default key of `virtkey run --presence terminal|pinentry|notify`, that provider's name until the API sets a mode"}, "overrides": ref("Overrides"),
    "stateDir": {"type": "string"}, "ephemeral": {"type": "boolean", "description": "the state directory is removed with the key"},
    "keystore": {"type": "string", "enum": ["software", "tpm"]},
    "exportAllowed": {"type": "boolean", "description": "private keys may leave and enter (ephemeral keys; the default key with --control-allow-export)"}}}
S["CredentialParams"] = {"type": "object", "required": ["rpId"],
  "description": "W3C WebDriver Credential Parameters, or Playwright's credential shape {id, rpId, userHandle, privateKey, publicKey} (then isResidentCredential defaults to true). The credential is stored, even when not resident, so it can be listed, read and deleted. Unknown fields are rejected.",
  "properties": {
    "credentialId": b64("credential id, 16 to 1023 bytes; absent: the key makes one"),
    "isResidentCredential": {"type": "boolean", "default": False},
    "rpId": {"type": "string"},
    "privateKey": b64("PKCS#8 DER private key: ES256 (P-256), EdDSA (Ed25519), ES384 (P-384) or RS256 (RSA); absent: the key makes a new key pair of `algorithm`. 403 when private keys may not enter this key; 409 with a TPM key store"),
    "userHandle": b64("user handle, at most 64 bytes; required for a resident credential"),
    "signCount": {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 4294967295},
    "largeBlob": b64("the credential's large blob (stored in the key's large-blob array)"),
    "backupEligibility": {"type": "boolean", "description": "default: the key's defaultBackupEligibility"},
    "backupState": {"type": "boolean", "description": "default: the key's defaultBackupState"},
    "userName": {"type": "string"}, "userDisplayName": {"type": "string"},
    "credProtect": {"type": "integer", "enum": [1, 2, 3]},
    "hmacSecret": {"type": "boolean", "description": "the credential supports hmac-secret / PRF"},
    "algorithm": {"type": "integer", "enum": [-7, -8, -35, -257], "description": "COSE algorithm of a generated key (default -7, ES256)"},
    "id": b64("Playwright's name for credentialId"),
    "publicKey": b64("Playwright: SPKI DER public key; must match privateKey")}}
S["Credential"] = {"type": "object", "required": ["credentialId", "isResidentCredential", "rpId", "signCount", "backupEligibility", "backupState", "hmacSecret", "publicKey", "algorithm"],
  "properties": {
    "credentialId": b64("credential id"), "isResidentCredential": {"type": "boolean"}, "rpId": {"type": "string"},
    "privateKey": b64("PKCS#8 DER; absent when private keys may not leave this key (TPM custody or export not allowed)"),
    "userHandle": b64("user handle"),
    "signCount": {"type": "integer", "format": "uint32", "description": "the current signature counter"},
    "largeBlob": b64("the credential's large blob"),
    "backupEligibility": {"type": "boolean"}, "backupState": {"type": "boolean"},
    "userName": {"type": "string"}, "userDisplayName": {"type": "string"},
    "credProtect": {"type": "integer", "enum": [1, 2, 3]},
    "hmacSecret": {"type": "boolean"},
    "publicKey": b64("SPKI DER public key"),
    "algorithm": {"type": "integer", "description": "COSE algorithm"}}}
S["PlaywrightCredential"] = {"type": "object", "required": ["id", "rpId", "userHandle", "privateKey", "publicKey"],
  "description": "Playwright's context.credentials shape",
  "properties": {"id": b64("credential id"), "rpId": {"type": "string"}, "userHandle": b64("user handle"),
                 "privateKey": b64("PKCS#8 DER"), "publicKey": b64("SPKI DER")}}
S["CredentialProps"] = {"type": "object", "description": "WebDriver Set Credential Properties plus signCount (re-bases the counter, lower values included) and user names. Absent fields are left as they are.",
  "properties": {"backupEligibility": {"type": "boolean"}, "backupState": {"type": "boolean"},
                 "signCount": {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 4294967295},
                 "userName": {"type": "string"}, "userDisplayName": {"type": "string"}}}
S["UVRequest"] = {"type": "object", "required": ["isUserVerified"], "properties": {"isUserVerified": {"type": "boolean"}}}
S["PresenceRequest"] = {"type": "object", "required": ["mode"], "properties": {"mode": ref("PresenceMode")}}
S["PendingPresence"] = {"type": "object", "required": ["requestId", "op", "rpId", "since"],
  "properties": {"requestId": {"type": "string"}, "op": {"type": "string", "description": "makeCredential, getAssertion, reset, selection, …"},
                 "rpId": {"type": "string"}, "userName": {"type": "string"}, "since": {"type": "string", "format": "date-time"}}}
S["PresenceAnswer"] = {"type": "object", "required": ["approve"], "properties": {"approve": {"type": "boolean"}}}
S["PINRequest"] = {"type": "object", "required": ["pin"], "properties": {"pin": {"type": "string", "description": "4 to 63 bytes of UTF-8"}}}
S["Event"] = {"type": "object", "required": ["type", "time"],
  "properties": {
    "type": {"type": "string", "enum": ["credentialAdded", "credentialAsserted", "credentialUpdated", "credentialDeleted", "presenceRequested", "presenceAnswered", "pinSet", "pinFailed", "reset", "replug", "eventsDropped"]},
    "time": {"type": "string", "format": "date-time"},
    "credentialId": b64("credential id"), "rpId": {"type": "string"}, "userHandle": b64("user handle"),
    "signCount": {"type": "integer", "format": "uint32"},
    "flags": {"type": "integer", "description": "authenticator-data flags byte: UP 0x01, UV 0x04, BE 0x08, BS 0x10, AT 0x40, ED 0x80"},
    "op": {"type": "string"},
    "status": {"type": "string", "description": "presenceAnswered: approved, denied, timeout or cancelled; pinFailed: the CTAP status"},
    "requestId": {"type": "string", "description": "presence events: the request id"},
    "dropped": {"type": "integer", "description": "eventsDropped: how many events this subscriber lost by falling behind"}}}

def resp(code, desc, schema=None, ctype="application/json"):
    r = {"description": desc}
    if schema: r["content"] = {ctype: {"schema": schema}}
    return {str(code): r}
def errs(*codes):
    out = {}
    names = {400: "bad request (bad JSON, wrong types, unknown fields, body too large, invalid values)", 401: "missing or wrong bearer token (TCP)", 403: "private keys may not leave or enter this key", 404: "no such key, credential or request", 409: "the key cannot do this (TPM custody; the default key cannot be removed)", 501: "this server cannot add keys"}
    for c in codes: out[str(c)] = {"description": names[c], "content": {"application/json": {"schema": ref("Error")}}}
    return out
def body(name): return {"required": True, "content": {"application/json": {"schema": ref(name)}}}
P = {}
def op(path, method, summary, ok, req=None, errors=(), params=(), extra=None):
    o = {"summary": summary, "operationId": extra.pop("operationId") if extra and "operationId" in extra else None, "responses": {}}
    if o["operationId"] is None: del o["operationId"]
    o["responses"].update(ok); o["responses"].update(errs(401, *errors))
    if req: o["requestBody"] = body(req)
    if params: o["parameters"] = list(params)
    if extra: o.update(extra)
    P.setdefault(path, {})[method] = o
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "key id"}
CID = {"name": "credentialId", "in": "path", "required": True, "schema": {"type": "string"}, "description": "credential id, base64url (or standard base64, percent-encoded)"}
RID = {"name": "requestId", "in": "path", "required": True, "schema": {"type": "string"}}
FMT = {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["webdriver", "playwright"], "default": "webdriver"}}
K = "/v1/keys/{id}"
op("/v1/openapi.json", "get", "this description", resp(200, "OpenAPI 3 document", {"type": "object"}), extra={"operationId": "getOpenAPI"})
op("/v1/keys", "get", "every key", resp(200, "keys", {"type": "array", "items": ref("Key")}), extra={"operationId": "listKeys"})
op("/v1/keys", "post", "add a key", resp(201, "the new key", ref("Key")), "KeyConfig", (400, 501), extra={"operationId": "addKey"})
op(K, "get", "one key", resp(200, "the key", ref("Key")), errors=(404,), params=(ID,), extra={"operationId": "getKey"})
op(K, "delete", "unplug and remove a key", resp(204, "removed"), errors=(404, 409), params=(ID,), extra={"operationId": "deleteKey"})
op(K + "/credentials", "post", "add a credential", resp(201, "the stored credential", ref("Credential")), "CredentialParams", (400, 403, 404, 409), (ID,), {"operationId": "addCredential"})
op(K + "/credentials", "get", "stored credentials with their current signCount. Non-resident credentials made over CTAP are stateless (their id is the wrapped key) and are not listed; a reset revokes them.",
   {"200": {"description": "credentials", "content": {"application/json": {"schema": {"oneOf": [{"type": "array", "items": ref("Credential")}, {"type": "array", "items": ref("PlaywrightCredential")}]}}}}}, None, (400, 403, 404, 409), (ID, FMT), {"operationId": "listCredentials"})
op(K + "/credentials", "delete", "delete every stored credential (stateless non-resident ones made over CTAP stay valid)", resp(204, "deleted"), errors=(404,), params=(ID,), extra={"operationId": "deleteCredentials"})
op(K + "/credentials/{credentialId}", "get", "one stored credential",
   {"200": {"description": "the credential", "content": {"application/json": {"schema": {"oneOf": [ref("Credential"), ref("PlaywrightCredential")]}}}}}, None, (400, 403, 404, 409), (ID, CID, FMT), {"operationId": "getCredential"})
op(K + "/credentials/{credentialId}", "delete", "delete one stored credential", resp(204, "deleted"), errors=(400, 404), params=(ID, CID), extra={"operationId": "deleteCredential"})
op(K + "/credentials/{credentialId}/props", "post", "set credential properties", resp(200, "the credential", ref("Credential")), "CredentialProps", (400, 404), (ID, CID), {"operationId": "setCredentialProps"})
op(K + "/uv", "post", "built-in UV succeeds or fails from now on (WebDriver Set User Verified)", resp(200, "the key", ref("Key")), "UVRequest", (400, 404), (ID,), {"operationId": "setUserVerified"})
op(K + "/presence", "post", "how presence requests are answered", resp(200, "the key", ref("Key")), "PresenceRequest", (400, 404), (ID,), {"operationId": "setPresence"})
op(K + "/presence/pending", "get", "queued presence requests, oldest first", resp(200, "requests", {"type": "array", "items": ref("PendingPresence")}), errors=(404,), params=(ID,), extra={"operationId": "listPendingPresence"})
op(K + "/presence/pending/{requestId}", "post", "answer a queued presence request", resp(204, "answered"), "PresenceAnswer", (400, 404), (ID, RID), {"operationId": "answerPresence"})
op(K + "/overrides", "post", "response override bits", resp(200, "the key", ref("Key")), "Overrides", (400, 404), (ID,), {"operationId": "setOverrides"})
op(K + "/pin", "post", "set or replace the PIN (retries back to 8)", resp(200, "the key", ref("Key")), "PINRequest", (400, 404), (ID,), {"operationId": "setPIN"})
op(K + "/pin", "delete", "remove the PIN", resp(200, "the key", ref("Key")), errors=(404,), params=(ID,), extra={"operationId": "removePIN"})
op(K + "/replug", "post", "power cycle (uhid: destroy and re-create the device; UDP: the magic-reboot semantics)", resp(200, "the key", ref("Key")), errors=(404,), params=(ID,), extra={"operationId": "replug"})
op(K + "/events", "get", "event stream: one JSON Event a line, flushed as it happens; ends when the key is removed",
   resp(200, "NDJSON stream of Event objects", ref("Event"), "application/x-ndjson"), errors=(404,), params=(ID,), extra={"operationId": "events"})
doc = {"openapi": "3.0.3",
  "info": {"title": "virtkey control API", "version": "1",
           "description": "Drive virtkey keys from test code: the W3C WebDriver Virtual Authenticators vocabulary for a real CTAP key every client sees. Served by `virtkey run --control unix:PATH` (socket 0600, no token) or `--control tcp:HOST:PORT --control-token-file FILE` (every request needs `Authorization: Bearer TOKEN`). Binary values are base64url without padding in responses; requests also accept standard base64. Errors are {\"error\": \"...\"}."},
  "servers": [{"url": "http://localhost"}],
  "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "TCP endpoints only; a Unix socket is guarded by its permissions"}}, "schemas": S},
  "security": [{"bearer": []}, {}],
  "paths": P}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "openapi.json")
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
