// Package client is a Go client of virtkey's control API (package
// control): typed methods for every /v1 route.
//
//	c, err := client.New("unix:/run/user/1000/virtkey/control.sock", "")
//	key := c.Key("default")
//	_, err = key.SetUserVerified(ctx, false)
//	events, err := key.Events(ctx)
//	ev, err := events.Next()
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/virtkey/virtkey/control"
)

// Client talks to one control endpoint.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client of address ("unix:PATH" or "tcp:HOST:PORT"); token
// is the bearer token ("" for none).
func New(address, token string) (*Client, error) {
	network, addr, err := control.ParseAddress(address)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}
	base := "http://" + addr
	if network == "unix" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}
		base = "http://virtkey"
	}
	return &Client{base: base, token: token, hc: &http.Client{Transport: tr}}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Error is an answer with an error status.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("control API: %d: %s", e.Status, e.Message) }

// Unwrap maps the status onto control's errors (control.ErrNotFound …).
func (e *Error) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound:
		return control.ErrNotFound
	case http.StatusForbidden:
		return control.ErrForbidden
	case http.StatusConflict:
		return control.ErrConflict
	case http.StatusBadRequest:
		return &control.BadRequestError{Msg: e.Message}
	}
	return nil
}

func (c *Client) request(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var e control.ErrorResponse
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, &Error{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

// do sends in (nil: no body) and decodes the answer into out (nil: none).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.request(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control API: bad answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Keys lists every key.
func (c *Client) Keys(ctx context.Context) ([]control.KeyInfo, error) {
	var out []control.KeyInfo
	return out, c.do(ctx, "GET", "/v1/keys", nil, &out)
}

// AddKey adds a key (POST /v1/keys).
func (c *Client) AddKey(ctx context.Context, cfg control.KeyConfig) (control.KeyInfo, error) {
	var out control.KeyInfo
	return out, c.do(ctx, "POST", "/v1/keys", cfg, &out)
}

// DeleteKey unplugs and removes key id.
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/keys/"+url.PathEscape(id), nil, nil)
}

// OpenAPI fetches the server's OpenAPI description.
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.do(ctx, "GET", "/v1/openapi.json", nil, &out)
}

// Key returns a handle on key id (no request is made).
func (c *Client) Key(id string) *Key {
	return &Key{c: c, id: id, path: "/v1/keys/" + url.PathEscape(id)}
}

// Key is one key's routes.
type Key struct {
	c    *Client
	id   string
	path string
}

// ID is the key's id.
func (k *Key) ID() string { return k.id }

func credPath(id []byte) string { return "/credentials/" + control.Bytes(id).String() }

// Info describes the key.
func (k *Key) Info(ctx context.Context) (control.KeyInfo, error) {
	var out control.KeyInfo
	return out, k.c.do(ctx, "GET", k.path, nil, &out)
}

// AddCredential stores a credential.
func (k *Key) AddCredential(ctx context.Context, p control.CredentialParams) (control.Credential, error) {
	var out control.Credential
	return out, k.c.do(ctx, "POST", k.path+"/credentials", p, &out)
}

// AddPlaywrightCredential stores a credential in Playwright's shape.
func (k *Key) AddPlaywrightCredential(ctx context.Context, p control.PlaywrightCredential) (control.Credential, error) {
	var out control.Credential
	return out, k.c.do(ctx, "POST", k.path+"/credentials", p, &out)
}

// Credentials lists the stored credentials.
func (k *Key) Credentials(ctx context.Context) ([]control.Credential, error) {
	var out []control.Credential
	return out, k.c.do(ctx, "GET", k.path+"/credentials", nil, &out)
}

// PlaywrightCredentials lists the stored credentials in Playwright's shape.
func (k *Key) PlaywrightCredentials(ctx context.Context) ([]control.PlaywrightCredential, error) {
	var out []control.PlaywrightCredential
	return out, k.c.do(ctx, "GET", k.path+"/credentials?format=playwright", nil, &out)
}

// Credential reads one stored credential.
func (k *Key) Credential(ctx context.Context, id []byte) (control.Credential, error) {
	var out control.Credential
	return out, k.c.do(ctx, "GET", k.path+credPath(id), nil, &out)
}

// DeleteCredential deletes one stored credential.
func (k *Key) DeleteCredential(ctx context.Context, id []byte) error {
	return k.c.do(ctx, "DELETE", k.path+credPath(id), nil, nil)
}

// DeleteCredentials deletes every stored credential.
func (k *Key) DeleteCredentials(ctx context.Context) error {
	return k.c.do(ctx, "DELETE", k.path+"/credentials", nil, nil)
}

// SetCredentialProps changes a credential's properties.
func (k *Key) SetCredentialProps(ctx context.Context, id []byte, p control.CredentialProps) (control.Credential, error) {
	var out control.Credential
	return out, k.c.do(ctx, "POST", k.path+credPath(id)+"/props", p, &out)
}

// SetUserVerified makes built-in UV succeed or fail.
func (k *Key) SetUserVerified(ctx context.Context, verified bool) (control.KeyInfo, error) {
	var out control.KeyInfo
	return out, k.c.do(ctx, "POST", k.path+"/uv", control.UVRequest{IsUserVerified: &verified}, &out)
}

// SetPresence sets the presence mode.
func (k *Key) SetPresence(ctx context.Context, mode control.PresenceMode) (control.KeyInfo, error) {
	var out control.KeyInfo
	return out, k.c.do(ctx, "POST", k.path+"/presence", control.PresenceRequest{Mode: mode}, &out)
}

// PendingPresence lists queued presence requests.
func (k *Key) PendingPresence(ctx context.Context) ([]control.PendingPresence, error) {
	var out []control.PendingPresence
	return out, k.c.do(ctx, "GET", k.path+"/presence/pending", nil, &out)
}

// AnswerPresence approves or refuses a queued presence request.
func (k *Key) AnswerPresence(ctx context.Context, requestID string, approve bool) error {
	return k.c.do(ctx, "POST", k.path+"/presence/pending/"+url.PathEscape(requestID), control.PresenceAnswer{Approve: &approve}, nil)
}

// SetOverrides sets the response override bits.
func (k *Key) SetOverrides(ctx context.Context, o control.Overrides) (control.KeyInfo, error) {
	var out control.KeyInfo
	return out, k.c.do(ctx, "POST", k.path+"/overrides", o, &out)
}

// SetPIN sets or replaces the PIN.
func (k *Key) SetPIN(ctx context.Context, pin string) (control.KeyInfo, error) {
	var out control.KeyInfo
	return out, k.c.do(ctx, "POST", k.path+"/pin", control.PINRequest{PIN: pin}, &out)
}

// RemovePIN removes the PIN.
func (k *Key) RemovePIN(ctx context.Context) (control.KeyInfo, error) {
	var out control.KeyInfo
	return out, k.c.do(ctx, "DELETE", k.path+"/pin", nil, &out)
}

// Replug power-cycles the key.
func (k *Key) Replug(ctx context.Context) (control.KeyInfo, error) {
	var out control.KeyInfo
	return out, k.c.do(ctx, "POST", k.path+"/replug", nil, &out)
}

// Events subscribes to the key's events. The subscription is in place
// when Events returns. Close the stream (or cancel ctx) to end it.
func (k *Key) Events(ctx context.Context) (*EventStream, error) {
	resp, err := k.c.request(ctx, "GET", k.path+"/events", nil)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	return &EventStream{body: resp.Body, sc: sc}, nil
}

// EventStream reads events one by one.
type EventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// Next blocks for the next event; io.EOF when the stream ended (the key
// was removed or the server stopped).
func (s *EventStream) Next() (control.Event, error) {
	var ev control.Event
	for s.sc.Scan() {
		line := bytes.TrimSpace(s.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		err := json.Unmarshal(line, &ev)
		return ev, err
	}
	if err := s.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }

// IsStatus reports whether err is an API answer with status code.
func IsStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == code
}
