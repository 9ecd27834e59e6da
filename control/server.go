package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxBody is the default request body limit (large blobs included).
const DefaultMaxBody = 1 << 20

// DefaultEventBuffer is how many events a subscriber may fall behind by.
const DefaultEventBuffer = 1024

// DefaultKeyID is the id of the key `virtkey run` serves.
const DefaultKeyID = "default"

// Options configure a [Server].
type Options struct {
	// Factory makes keys for POST /v1/keys; nil answers 501.
	Factory KeyFactory
	// Logger receives request logs (never bodies); nil discards them.
	Logger *slog.Logger
	// MaxBody limits request bodies (default DefaultMaxBody).
	MaxBody int64
	// EventBuffer is each event subscriber's buffer (default DefaultEventBuffer).
	EventBuffer int
	// WriteTimeout bounds one write of the event stream (default 10 s):
	// a reader stuck that long is disconnected.
	WriteTimeout time.Duration
}

// Server is the control plane: the registry of keys and its HTTP handler.
type Server struct {
	opts  Options
	log   *slog.Logger
	mux   *router
	mu    sync.Mutex
	keys  map[string]*entry
	seq   int
	quit  chan struct{} // closed by Close: event streams end
	close sync.Once
	adds  sync.WaitGroup // POST /v1/keys in progress
}

// entry is one registered key.
type entry struct {
	id       string
	key      Key
	closeKey func() error
	gone     chan struct{} // closed when the key is removed
	inflight sync.WaitGroup
}

// NewServer returns a server with no keys.
func NewServer(opts Options) *Server {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = DefaultEventBuffer
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, keys: map[string]*entry{}, quit: make(chan struct{})}
	s.mux = s.routes()
	return s
}

// AddKey registers k under id. closeKey (nil: the key cannot be removed
// through the API, like the key `virtkey run` serves) unplugs it.
func (s *Server) AddKey(id string, k Key, closeKey func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed() {
		return errors.New("control: server closed")
	}
	if _, ok := s.keys[id]; ok {
		return fmt.Errorf("control: key %q exists", id)
	}
	s.keys[id] = &entry{id: id, key: k, closeKey: closeKey, gone: make(chan struct{})}
	return nil
}

// RemoveKey unregisters key id, ends its event streams, waits for its
// in-flight API calls and closes it.
func (s *Server) RemoveKey(id string) error {
	s.mu.Lock()
	e, ok := s.keys[id]
	if ok {
		delete(s.keys, id)
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("key %q: %w", id, ErrNotFound)
	}
	return s.retire(e)
}

func (s *Server) retire(e *entry) error {
	close(e.gone)
	e.inflight.Wait()
	if e.closeKey != nil {
		return e.closeKey()
	}
	return nil
}

func (s *Server) closed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// Close removes every key (closing those made through the API), ends
// every event stream and refuses new keys. It does not stop listeners:
// cancel [Server.Serve]'s context for that.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() {
		s.mu.Lock()
		close(s.quit)
		s.mu.Unlock()
		s.adds.Wait()
		s.mu.Lock()
		es := make([]*entry, 0, len(s.keys))
		for _, e := range s.keys {
			es = append(es, e)
		}
		s.keys = map[string]*entry{}
		s.mu.Unlock()
		for _, e := range es {
			err = errors.Join(err, s.retire(e))
		}
	})
	return err
}

// Handler is the /v1 API without caller authentication (a Unix socket's
// permissions, or [Listener], guard it).
func (s *Server) Handler() http.Handler { return s.mux }

// acquire finds key id and holds it against removal until release.
func (s *Server) acquire(id string) (*entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("key %q: %w", id, ErrNotFound)
	}
	e.inflight.Add(1)
	return e, nil
}

func (s *Server) infos() []KeyInfo {
	s.mu.Lock()
	es := make([]*entry, 0, len(s.keys))
	for _, e := range s.keys {
		es = append(es, e)
	}
	s.mu.Unlock()
	sort.Slice(es, func(i, j int) bool { return keyLess(es[i].id, es[j].id) })
	out := make([]KeyInfo, 0, len(es))
	for _, e := range es {
		out = append(out, info(e))
	}
	return out
}

// keyLess orders "default" first, then key-N by N, then by name.
func keyLess(a, b string) bool {
	if a == DefaultKeyID || b == DefaultKeyID {
		return a == DefaultKeyID && b != DefaultKeyID
	}
	na, ea := keyNumber(a)
	nb, eb := keyNumber(b)
	if ea == nil && eb == nil {
		return na < nb
	}
	return a < b
}

func keyNumber(id string) (int, error) {
	if len(id) < 5 || id[:4] != "key-" {
		return 0, errors.New("not numbered")
	}
	return strconv.Atoi(id[4:])
}

func info(e *entry) KeyInfo {
	ki := e.key.Info()
	ki.ID = e.id
	if ki.Extensions == nil {
		ki.Extensions = []string{}
	}
	return ki
}

// addKey makes a key with the factory and registers it.
func (s *Server) addKey(ctx context.Context, cfg KeyConfig) (KeyInfo, error) {
	if s.opts.Factory == nil {
		return KeyInfo{}, errNotImplemented
	}
	s.mu.Lock()
	if s.closed() {
		s.mu.Unlock()
		return KeyInfo{}, errShuttingDown
	}
	s.adds.Add(1)
	s.seq++
	id := "key-" + strconv.Itoa(s.seq)
	s.mu.Unlock()
	defer s.adds.Done()
	k, closeKey, err := s.opts.Factory.NewKey(ctx, cfg)
	if err != nil {
		return KeyInfo{}, err
	}
	if err := s.AddKey(id, k, closeKey); err != nil {
		return KeyInfo{}, errors.Join(errShuttingDown, closeKey())
	}
	s.log.Info("control: key added", "id", id, "attach", cfg.Attach)
	ki := k.Info()
	ki.ID = id
	if ki.Extensions == nil {
		ki.Extensions = []string{}
	}
	return ki, nil
}

var (
	errNotImplemented = errors.New("this server cannot add keys")
	errShuttingDown   = errors.New("the control server is shutting down")
)
