package tpmkeys

import (
	"container/list"
	"sync"
)

// DefaultCacheSize is how many opened credential keys a Software keeps.
const DefaultCacheSize = 256

// keyCache is a small LRU of opened credentials keyed by credential ID.
// Reconstructing a signing key from its scalar costs a scalar-base
// multiplication (and Go's ECDSA caches its precomputation per
// *ecdsa.PrivateKey), so reusing the opened key keeps getAssertion close to
// the cost of the signature alone.
//
// An entry records the rpIDHash its ID was authenticated with; a lookup with
// another rpIDHash misses and goes through the AEAD, which then fails.
type keyCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *cacheEntry, most recent first
	m   map[string]*list.Element
}

type cacheEntry struct {
	id       string
	rpIDHash []byte
	key      *credentialKey
	meta     []byte
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, ll: list.New(), m: make(map[string]*list.Element)}
}

func (c *keyCache) get(id []byte) (*cacheEntry, bool) {
	if c.max <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[string(id)]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cacheEntry), true
}

// put adds e; entries are immutable once added.
func (c *keyCache) put(e *cacheEntry) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[e.id]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.m[e.id] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		old := c.ll.Remove(c.ll.Back()).(*cacheEntry)
		delete(c.m, old.id)
	}
}

func (c *keyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.m)
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
