// Package control is virtkey's test-automation control plane: an HTTP/1.1 +
// JSON API under /v1 that adds and removes keys, seeds and reads
// credentials, switches user verification and presence, answers queued
// presence requests and streams events — the W3C WebDriver "Virtual
// Authenticators" vocabulary, for a key every client sees over CTAP.
//
// # Shape
//
// The package owns HTTP, JSON, the authentication of callers and the
// registry of running keys. It declares what it consumes: a [Key] (one
// running key) and a [KeyFactory] (makes keys for POST /v1/keys). It never
// imports ctap2, a transport or a store: control/vkey adapts an
// authenticator to a Key, control/factory makes keys with their transport,
// control/client and control/ctl (`virtkey ctl`) are the clients, and
// `virtkey run --control` hands its key over as "default".
//
// # Listening
//
// [Listen] takes "unix:PATH" or "tcp:HOST:PORT". A Unix socket is created
// 0600 in a directory that is not group- or other-writable (created 0700
// when missing). TCP needs a bearer token (read from a file) on every
// request and a loopback address unless remote access is explicitly
// allowed. Tokens are compared in constant time.
//
// # Wire conventions
//
// Binary values (credential ids, user handles, private keys, large blobs)
// are base64url without padding in responses; requests accept standard
// and URL base64, padded or not. Errors are {"error": "..."} with a 4xx or
// 5xx status. Request bodies are limited ([DefaultMaxBody]); bad JSON,
// unknown fields and wrong types are 400. openapi.json describes /v1 and is
// served at GET /v1/openapi.json.
//
// # Events
//
// GET /v1/keys/{id}/events is a stream of JSON objects, one per line, each
// flushed when it happens. Each subscriber has a bounded buffer: a reader
// that falls behind loses events (and is told so by an "eventsDropped"
// event carrying the count) but never slows the key.
package control
