package control

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ListenConfig says where the control API listens.
type ListenConfig struct {
	// Address is "unix:PATH" or "tcp:HOST:PORT".
	Address string
	// TokenFile holds the bearer token; required for TCP. With a Unix
	// socket it is optional and, when set, required on every request too.
	TokenFile string
	// AllowRemote lets TCP listen on a non-loopback address.
	AllowRemote bool
	// Logger gets the warning AllowRemote calls for; nil discards it.
	Logger *slog.Logger
}

// Listener is a bound control endpoint.
type Listener struct {
	net.Listener
	network string
	path    string // Unix socket path, removed by Close
	token   []byte
}

// ParseAddress splits "unix:PATH" or "tcp:HOST:PORT" into a network and
// an address.
func ParseAddress(s string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(s, ":")
	if !ok || addr == "" || (network != "unix" && network != "tcp") {
		return "", "", fmt.Errorf("control address %q: want unix:PATH or tcp:HOST:PORT", s)
	}
	return network, addr, nil
}

// ReadToken reads a bearer token file: the first line, trimmed; at least
// 16 characters.
func ReadToken(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("control token: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	tok := bytes.TrimSpace(line)
	if len(tok) < 16 {
		return nil, fmt.Errorf("control token in %s: want at least 16 characters", file)
	}
	return tok, nil
}

// Listen binds the control endpoint.
func Listen(cfg ListenConfig) (*Listener, error) {
	network, addr, err := ParseAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var tok []byte
	if cfg.TokenFile != "" {
		if tok, err = ReadToken(cfg.TokenFile); err != nil {
			return nil, err
		}
	}
	if network == "unix" {
		return listenUnix(addr, tok)
	}
	if tok == nil {
		return nil, errors.New("control over TCP needs a bearer token: --control-token-file")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("control address %q: %w", cfg.Address, err)
	}
	if !isLoopback(host) {
		if !cfg.AllowRemote {
			return nil, fmt.Errorf("control address %q is not a loopback address: add --control-allow-remote to serve other hosts", cfg.Address)
		}
		log.Warn("control API reachable from other hosts (--control-allow-remote): anyone with the token controls the keys", "addr", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Listener{Listener: ln, network: "tcp", token: tok}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listenUnix binds path with mode 0600 in a directory no one else may
// write. It binds a temporary name and renames it into place, so the
// socket is never reachable with looser permissions.
func listenUnix(path string, tok []byte) (*Listener, error) {
	path = filepath.Clean(path)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("control socket directory %s is writable by group or others (%v): use a private directory", dir, st.Mode().Perm())
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another server is listening", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: removing a stale one: %w", err)
		}
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d.tmp", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (*Listener, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return &Listener{Listener: ln, network: "unix", path: path, token: tok}, nil
}

// Close stops listening and removes a Unix socket.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	if l.path != "" {
		if e := os.Remove(l.path); e != nil && !errors.Is(e, os.ErrNotExist) {
			err = errors.Join(err, e)
		}
	}
	return err
}

// URL is how a client names this endpoint: "unix:PATH" or "tcp:HOST:PORT".
func (l *Listener) URL() string {
	if l.network == "unix" {
		return "unix:" + l.path
	}
	return "tcp:" + l.Addr().String()
}

// Serve serves s's API on l until ctx ends, then shuts down: requests in
// progress finish (event streams end at once) and l is closed.
func (s *Server) Serve(ctx context.Context, l *Listener) error {
	h := s.Handler()
	if l.token != nil {
		h = requireToken(l.token, h)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	// Event streams never go idle: shutting down tells them to end.
	stopStreams := make(chan struct{})
	srv.BaseContext = func(net.Listener) context.Context {
		return context.WithValue(context.WithoutCancel(ctx), stopStreamsKey{}, stopStreams)
	}
	srv.RegisterOnShutdown(func() { close(stopStreams) })
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		l.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	<-done
	l.Close()
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil // streaming connections were closed
	}
	return err
}

// requireToken checks "Authorization: Bearer TOKEN" in constant time.
func requireToken(tok []byte, next http.Handler) http.Handler {
	want := sha256.Sum256(tok)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		h := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(h[:], want[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="virtkey"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

type stopStreamsKey struct{}

// streamsStopped is closed when the server serving r shuts down.
func streamsStopped(r *http.Request) <-chan struct{} {
	ch, _ := r.Context().Value(stopStreamsKey{}).(chan struct{})
	return ch // nil (never ready) outside Serve
}
