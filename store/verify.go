package store

import (
	"bytes"
	"fmt"
	"os"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// bbolt trusts the page pointers it follows: a damaged branch page that
// points back up its own tree sends a lookup into endless recursion (a
// fatal stack overflow, not a panic) and an iteration into an endless loop.
// So every tree walk goes through a vbucket, which first follows the same
// pointers itself — reading the committed pages with ReadAt, never through
// bbolt's memory map — and refuses a cycle, a page out of range or of the
// wrong kind, or a tree deeper than maxDepth:
//
//   - a point lookup (Get, Put, Delete, Bucket) checks the path bbolt's
//     search will take for that key: a few pages;
//   - an iteration (ForEach, First, DeleteBucket, Stats) checks the whole
//     tree, which the iteration reads anyway.
//
// Verified branch pages, and the leaf pages point lookups end on, are
// cached until the next commit.

const (
	maxDepth         = 32
	branchElemSize   = 16 // pos u32, ksize u32, pgid u64
	leafElemSize     = 16 // flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderSize = 16 // root u64, sequence u64
	bucketLeafFlag   = 0x01
)

type branchElem struct {
	key   []byte
	child uint64
}

type leafElem struct {
	flags      uint32
	key, value []byte
}

// verifier reads committed pages for the checks above.
type verifier struct {
	f                  *os.File
	pageSize           int
	branches           map[uint64][]branchElem // verified branch pages, until the next commit
	leaves             map[uint64][]byte       // leaf pages a search ended on, until the next commit
	metaTxid, metaRoot uint64                  // the root page of the last transaction seen
	meta               boltMeta                // its meta page
}

func newVerifier(path string, pageSize int) (*verifier, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &verifier{f: f, pageSize: pageSize, branches: map[uint64][]branchElem{}, leaves: map[uint64][]byte{}}, nil
}

func (v *verifier) close() {
	if v != nil {
		v.f.Close()
	}
}

// forget drops the cache (after a commit pages may be freed and reused).
func (v *verifier) forget() {
	clear(v.branches)
	clear(v.leaves)
}

// maxCachedLeaves bounds the leaf cache: a transaction that looks up many
// keys (a migration) keeps few leaves.
const maxCachedLeaves = 64

// page reads page id (with its overflow pages) of a file whose high-water
// mark is pages, checking that it says it is page id and is a tree page.
// One read for a page without overflow.
func (v *verifier) page(id, pages uint64) ([]byte, error) {
	if id < 2 || id >= pages {
		return nil, errDamage{fmt.Sprintf("page %d out of range [2, %d)", id, pages)}
	}
	ps := uint64(v.pageSize)
	b := make([]byte, ps)
	if _, err := v.f.ReadAt(b, int64(id*ps)); err != nil {
		return nil, errDamage{fmt.Sprintf("page %d cannot be read (%v)", id, err)}
	}
	flags, overflow := nativeEndian.Uint16(b[8:]), uint64(nativeEndian.Uint32(b[12:]))
	switch {
	case nativeEndian.Uint64(b) != id:
		return nil, errDamage{fmt.Sprintf("page %d says it is page %d", id, nativeEndian.Uint64(b))}
	case flags != flagBranch && flags != flagLeaf:
		return nil, errDamage{fmt.Sprintf("page %d is not a tree page (flags %#x)", id, flags)}
	case id+overflow >= pages:
		return nil, errDamage{fmt.Sprintf("page %d: %d overflow pages past the high-water mark", id, overflow)}
	case overflow == 0:
		return b, nil
	}
	b = append(b, make([]byte, overflow*ps)...)
	if _, err := v.f.ReadAt(b[ps:], int64((id+1)*ps)); err != nil {
		return nil, errDamage{fmt.Sprintf("page %d cannot be read (%v)", id, err)}
	}
	return b, nil
}

func isBranch(p []byte) bool { return nativeEndian.Uint16(p[8:]) == flagBranch }

// branchElems parses a branch page (or returns the cached parse).
func (v *verifier) branchElems(id uint64, p []byte) ([]branchElem, error) {
	if es, ok := v.branches[id]; ok {
		return es, nil
	}
	n := int(nativeEndian.Uint16(p[10:]))
	if n == 0 || pageHeaderSize+n*branchElemSize > len(p) {
		return nil, errDamage{fmt.Sprintf("branch page %d: %d elements", id, n)}
	}
	es := make([]branchElem, n)
	for i := range n {
		off := pageHeaderSize + i*branchElemSize
		pos, ksize := int(nativeEndian.Uint32(p[off:])), int(nativeEndian.Uint32(p[off+4:]))
		if pos < 0 || ksize < 0 || off+pos+ksize > len(p) || off+pos < off {
			return nil, errDamage{fmt.Sprintf("branch page %d: element %d out of the page", id, i)}
		}
		es[i] = branchElem{key: p[off+pos : off+pos+ksize], child: nativeEndian.Uint64(p[off+8:])}
	}
	return es, nil
}

// leafElems parses a leaf page, or an inline bucket's page.
func leafElems(what string, p []byte) ([]leafElem, error) {
	if len(p) < pageHeaderSize || nativeEndian.Uint16(p[8:]) != flagLeaf {
		return nil, errDamage{what + " is not a leaf page"}
	}
	n := int(nativeEndian.Uint16(p[10:]))
	if pageHeaderSize+n*leafElemSize > len(p) {
		return nil, errDamage{fmt.Sprintf("%s: %d elements do not fit", what, n)}
	}
	es := make([]leafElem, n)
	for i := range n {
		off := pageHeaderSize + i*leafElemSize
		pos := int(nativeEndian.Uint32(p[off+4:]))
		ksize, vsize := int(nativeEndian.Uint32(p[off+8:])), int(nativeEndian.Uint32(p[off+12:]))
		end := off + pos + ksize + vsize
		if pos < 0 || ksize < 0 || vsize < 0 || end > len(p) || end < off {
			return nil, errDamage{fmt.Sprintf("%s: element %d out of the page", what, i)}
		}
		es[i] = leafElem{flags: nativeEndian.Uint32(p[off:]), key: p[off+pos : off+pos+ksize], value: p[off+pos+ksize : end]}
	}
	return es, nil
}

// search is bbolt's choice of child in a branch page for key.
func search(es []branchElem, key []byte) uint64 { return es[searchIndex(es, key)].child }

// searchIndex is the index of that child.
func searchIndex(es []branchElem, key []byte) int {
	exact := false
	i := sort.Search(len(es), func(i int) bool {
		c := bytes.Compare(es[i].key, key)
		exact = exact || c == 0
		return c != -1
	})
	if !exact && i > 0 {
		i--
	}
	if i >= len(es) {
		i = len(es) - 1
	}
	return i
}

// path checks the pages a search for key follows from root and returns the
// leaf page it ends on.
func (v *verifier) path(root, pages uint64, key []byte) ([]byte, error) {
	seen := map[uint64]bool{}
	id := root
	for depth := 0; ; depth++ {
		if depth > maxDepth || seen[id] {
			return nil, errDamage{fmt.Sprintf("page %d: the tree loops or is too deep", id)}
		}
		seen[id] = true
		if es, ok := v.branches[id]; ok {
			id = search(es, key)
			continue
		}
		if p, ok := v.leaves[id]; ok {
			return p, nil
		}
		p, err := v.page(id, pages)
		if err != nil {
			return nil, err
		}
		if !isBranch(p) {
			if len(v.leaves) < maxCachedLeaves {
				v.leaves[id] = p
			}
			return p, nil
		}
		es, err := v.branchElems(id, p)
		if err != nil {
			return nil, err
		}
		v.branches[id] = es
		id = search(es, key)
	}
}

// seekFrame is a branch page on a seek's way down and the child taken.
type seekFrame struct {
	es []branchElem
	i  int
}

// seek checks the pages a bbolt cursor's Seek(key) visits: the search path
// for key and, when key is past the last key of the leaf it ends on, the
// way to the next leaf — bbolt climbs to the nearest ancestor with a next
// child and takes the leftmost path below it, skipping empty leaves. A nil
// key is First.
func (v *verifier) seek(root, pages uint64, key []byte) error {
	seen := map[uint64]bool{}
	var stack []seekFrame
	leaf, err := v.descend(root, pages, key, key == nil, seen, &stack)
	for err == nil {
		var es []leafElem
		if es, err = leafElems("leaf", leaf); err != nil {
			return err
		}
		if key == nil && len(es) > 0 {
			return nil
		}
		if key != nil && len(es) > 0 && bytes.Compare(es[len(es)-1].key, key) >= 0 {
			return nil
		}
		for len(stack) > 0 && stack[len(stack)-1].i >= len(stack[len(stack)-1].es)-1 {
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			return nil // the end of the tree
		}
		top := &stack[len(stack)-1]
		top.i++
		key = nil // the next leaf's first key is the answer
		leaf, err = v.descend(top.es[top.i].child, pages, nil, true, seen, &stack)
	}
	return err
}

// descend checks the pages from id down to a leaf, by key or leftmost,
// pushing the branch pages on stack, and returns the leaf.
func (v *verifier) descend(id, pages uint64, key []byte, leftmost bool, seen map[uint64]bool, stack *[]seekFrame) ([]byte, error) {
	for {
		if len(*stack) > maxDepth || seen[id] {
			return nil, errDamage{fmt.Sprintf("page %d: the tree loops or is too deep", id)}
		}
		seen[id] = true
		es, ok := v.branches[id]
		if !ok {
			p, cached := v.leaves[id]
			if !cached {
				var err error
				if p, err = v.page(id, pages); err != nil {
					return nil, err
				}
			}
			if !isBranch(p) {
				if !cached && len(v.leaves) < maxCachedLeaves {
					v.leaves[id] = p
				}
				return p, nil
			}
			var err error
			if es, err = v.branchElems(id, p); err != nil {
				return nil, err
			}
			v.branches[id] = es
		}
		i := 0
		if !leftmost {
			i = searchIndex(es, key)
		}
		*stack = append(*stack, seekFrame{es: es, i: i})
		id = es[i].child
	}
}

// tree checks every page of the tree at root. With nested, it also checks
// the trees of the buckets nested in it. visited, if not nil, collects the
// pages (a page reached twice is damage).
func (v *verifier) tree(root, pages uint64, nested bool, visited map[uint64]bool) error {
	if visited == nil {
		visited = map[uint64]bool{}
	}
	return v.walk(root, pages, nested, visited, 0)
}

func (v *verifier) walk(id, pages uint64, nested bool, visited map[uint64]bool, depth int) error {
	if depth > maxDepth || visited[id] {
		return errDamage{fmt.Sprintf("page %d: referenced twice (the tree loops)", id)}
	}
	p, err := v.page(id, pages)
	if err != nil {
		return err
	}
	for i := uint64(0); i <= uint64(nativeEndian.Uint32(p[12:])); i++ {
		visited[id+i] = true
	}
	if isBranch(p) {
		es, err := v.branchElems(id, p)
		if err != nil {
			return err
		}
		v.branches[id] = es
		for _, e := range es {
			if err := v.walk(e.child, pages, nested, visited, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if !nested {
		return nil
	}
	return v.nestedIn(fmt.Sprintf("leaf page %d", id), p, pages, visited, depth)
}

// nestedIn checks the buckets nested in a leaf page (or inline page).
func (v *verifier) nestedIn(what string, p []byte, pages uint64, visited map[uint64]bool, depth int) error {
	es, err := leafElems(what, p)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.flags&bucketLeafFlag == 0 {
			continue
		}
		root, inline, err := bucketHeader(what, e)
		if err != nil {
			return err
		}
		if root != 0 {
			err = v.walk(root, pages, true, visited, depth+1)
		} else if depth < maxDepth {
			err = v.nestedIn(fmt.Sprintf("inline bucket %q", e.key), inline, pages, visited, depth+1)
		} else {
			err = errDamage{"inline buckets nested too deep"}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// bucketHeader reads a bucket element: its root page, or its inline page.
func bucketHeader(what string, e leafElem) (root uint64, inline []byte, err error) {
	if len(e.value) < bucketHeaderSize {
		return 0, nil, errDamage{fmt.Sprintf("%s: bucket %q has a %d-byte header", what, e.key, len(e.value))}
	}
	root = nativeEndian.Uint64(e.value)
	if root == 0 {
		inline = e.value[bucketHeaderSize:]
		if _, err := leafElems(fmt.Sprintf("inline bucket %q", e.key), inline); err != nil {
			return 0, nil, err
		}
	}
	return root, inline, nil
}

// find returns the element for key in the leaf where a search from root
// (or in the inline page) ends; nil if there is none.
func (v *verifier) find(root uint64, inline []byte, pages uint64, key []byte) (*leafElem, error) {
	p := inline
	if root != 0 {
		var err error
		if p, err = v.path(root, pages, key); err != nil {
			return nil, err
		}
	}
	es, err := leafElems("leaf", p)
	if err != nil {
		return nil, err
	}
	i := sort.Search(len(es), func(i int) bool { return bytes.Compare(es[i].key, key) != -1 })
	if i < len(es) && bytes.Equal(es[i].key, key) {
		return &es[i], nil
	}
	return nil, nil
}

// vbucket is a bbolt bucket whose trees are checked before bbolt walks
// them (see the top of this file). The tree checked is the one bbolt will
// walk: the bucket's root page as bbolt reports it. An inline bucket
// (root page 0) has no page pointers, only its page inside the parent's
// value, which bucket checks when it comes from the file; one bbolt made
// in this transaction is in memory, written by bbolt.
type vbucket struct {
	d      *DB
	tx     *bolt.Tx
	b      *bolt.Bucket // nil: the root bucket, whose buckets are the top-level ones
	root   uint64       // the root bucket's root page
	inline []byte       // the inline page read from the file, for an inline b
}

func (d *DB) pages(tx *bolt.Tx) uint64 { return uint64(tx.Size()) / uint64(d.verify.pageSize) }

// top returns the top-level bucket name, checked.
func (d *DB) top(tx *bolt.Tx, name []byte) (vbucket, error) {
	root, err := d.rootBucket(tx)
	if err != nil {
		return vbucket{}, err
	}
	b, err := root.bucket(name)
	if err == nil && b.b == nil {
		err = errDamage{fmt.Sprintf("bucket %q is missing", name)}
	}
	return b, err
}

// get reads key from the top-level bucket name, checked.
func (d *DB) get(tx *bolt.Tx, name, key []byte) ([]byte, error) {
	b, err := d.top(tx, name)
	if err != nil {
		return nil, err
	}
	return b.get(key)
}

// put writes key in the top-level bucket name, checked.
func (d *DB) put(tx *bolt.Tx, name, key, value []byte) error {
	b, err := d.top(tx, name)
	if err != nil {
		return err
	}
	return b.put(key, value)
}

// rootBucket is the root bucket of tx.
func (d *DB) rootBucket(tx *bolt.Tx) (vbucket, error) {
	root, err := d.verify.rootPage(tx)
	return vbucket{d: d, tx: tx, root: root}, err
}

// rootPage is the root page of the tree of top-level buckets that tx
// sees: from the meta page of the transaction tx started from.
func (v *verifier) rootPage(tx *bolt.Tx) (uint64, error) {
	txid := uint64(tx.ID())
	if tx.Writable() {
		txid--
	}
	if v.metaTxid == txid && v.metaRoot != 0 {
		return v.metaRoot, nil
	}
	for i := range int64(2) {
		b := make([]byte, pageHeaderSize+metaSize)
		if _, err := v.f.ReadAt(b, i*int64(v.pageSize)); err != nil {
			continue
		}
		if m := parseMeta(b); m.valid && m.txid == txid {
			v.metaTxid, v.metaRoot, v.meta = txid, m.root, m
			return m.root, nil
		}
	}
	return 0, errDamage{fmt.Sprintf("no valid meta page for transaction %d", txid)}
}

// page is the root page of the tree bbolt walks for v (0: inline).
func (v vbucket) page() uint64 {
	if v.b == nil {
		return v.root
	}
	return uint64(v.b.Root())
}

// bucket returns the bucket nested under key, checked; its b is nil when
// there is none.
func (v vbucket) bucket(key []byte) (vbucket, error) {
	out := vbucket{d: v.d, tx: v.tx}
	var e *leafElem
	var err error
	if r := v.page(); r != 0 {
		e, err = v.d.verify.find(r, nil, v.d.pages(v.tx), key)
	} else if v.inline != nil {
		e, err = v.d.verify.find(0, v.inline, v.d.pages(v.tx), key)
	}
	if err != nil {
		return out, err
	}
	var inline []byte
	if e != nil && e.flags&bucketLeafFlag != 0 {
		if _, inline, err = bucketHeader("bucket", *e); err != nil {
			return out, err
		}
	}
	if v.b == nil {
		out.b = v.tx.Bucket(key)
	} else {
		out.b = v.b.Bucket(key)
	}
	if out.b != nil && out.b.Root() == 0 {
		out.inline = inline
	}
	return out, nil
}

// checkPath checks the path to key.
func (v vbucket) checkPath(key []byte) error {
	r := v.page()
	if r == 0 {
		return nil
	}
	_, err := v.d.verify.path(r, v.d.pages(v.tx), key)
	return err
}

// checkTree checks the whole tree (and, with nested, its buckets').
func (v vbucket) checkTree(nested bool) error {
	if r := v.page(); r != 0 {
		return v.d.verify.tree(r, v.d.pages(v.tx), nested, nil)
	}
	if nested && v.inline != nil {
		return v.d.verify.nestedIn("inline bucket", v.inline, v.d.pages(v.tx), map[uint64]bool{}, 0)
	}
	return nil
}

// seek positions c (a cursor of v) at the first key ≥ key (nil: the
// first key), after checking the pages bbolt will visit.
func (v vbucket) seek(c *bolt.Cursor, key []byte) (k, val []byte, err error) {
	if r := v.page(); r != 0 {
		if err := v.d.verify.seek(r, v.d.pages(v.tx), key); err != nil {
			return nil, nil, err
		}
	}
	if key == nil {
		k, val = c.First()
	} else {
		k, val = c.Seek(key)
	}
	return k, val, nil
}

func (v vbucket) get(key []byte) ([]byte, error) {
	if err := v.checkPath(key); err != nil {
		return nil, err
	}
	return v.b.Get(key), nil
}

func (v vbucket) put(key, value []byte) error {
	if err := v.checkPath(key); err != nil {
		return err
	}
	return v.b.Put(key, value)
}

func (v vbucket) delete(key []byte) error {
	if err := v.checkPath(key); err != nil {
		return err
	}
	return v.b.Delete(key)
}

func (v vbucket) forEach(fn func(k, v []byte) error) error {
	if err := v.checkTree(false); err != nil {
		return err
	}
	return v.b.ForEach(fn)
}

// first is the first key, or nil.
func (v vbucket) first() ([]byte, error) {
	if err := v.checkTree(false); err != nil {
		return nil, err
	}
	k, _ := v.b.Cursor().First()
	return k, nil
}

// createBucketIfNotExists returns the bucket nested under key, creating it.
func (v vbucket) createBucketIfNotExists(key []byte) (vbucket, error) {
	nb, err := v.bucket(key)
	if err != nil || nb.b != nil {
		return nb, err
	}
	if err := v.checkPath(key); err != nil {
		return nb, err
	}
	if v.b == nil {
		nb.b, err = v.tx.CreateBucket(key)
	} else {
		nb.b, err = v.b.CreateBucket(key)
	}
	return nb, err
}

// deleteBucket deletes the bucket nested under key; bbolt walks all its
// pages to free them, so they are checked first.
func (v vbucket) deleteBucket(key []byte) error {
	nb, err := v.bucket(key)
	if err != nil {
		return err
	}
	if nb.b != nil {
		if err := nb.checkTree(true); err != nil {
			return err
		}
	}
	if v.b == nil {
		return v.tx.DeleteBucket(key)
	}
	return v.b.DeleteBucket(key)
}
