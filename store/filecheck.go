package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// This file checks the parts of a bbolt file that bbolt trusts at open —
// the meta pages, the freelist, the root pages — by reading them with
// ReadAt (no mmap, so no fault) before bbolt maps the file. The cost does
// not grow with the file: a few pages and the freelist. [Check] reads
// everything.
//
// The bbolt (file format version 2) layout used here, in native byte order:
//
//	page header (16): id u64, flags u16, count u16, overflow u32
//	meta (after the header): magic u32, version u32, pageSize u32, flags u32,
//	    root {pgid u64, sequence u64}, freelist u64, pgid u64, txid u64,
//	    checksum u64 (FNV-64a of the 56 bytes before it)
//	freelist page: count page ids (u64); a count of 0xFFFF means the first
//	    u64 is the real count

const (
	pageHeaderSize = 16
	metaSize       = 64
	metaSumLen     = 56
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	flagBranch     = 0x01
	flagLeaf       = 0x02
	flagMeta       = 0x04
	flagFreelist   = 0x10
	noFreelist     = ^uint64(0)
	maxPageSize    = 1 << 24
)

type boltMeta struct {
	pageSize         uint32
	root, freelist   uint64
	pgid, txid       uint64
	valid            bool
	validationFailed string
}

var nativeEndian = binary.NativeEndian

func parseMeta(page []byte) boltMeta {
	if len(page) < pageHeaderSize+metaSize {
		return boltMeta{validationFailed: "short"}
	}
	m := page[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	bm := boltMeta{
		pageSize: nativeEndian.Uint32(m[8:]),
		root:     nativeEndian.Uint64(m[16:]),
		freelist: nativeEndian.Uint64(m[32:]),
		pgid:     nativeEndian.Uint64(m[40:]),
		txid:     nativeEndian.Uint64(m[48:]),
	}
	switch {
	case nativeEndian.Uint32(m[0:]) != boltMagic:
		bm.validationFailed = "not a bbolt meta page (magic)"
	case nativeEndian.Uint32(m[4:]) != boltVersion:
		bm.validationFailed = "unknown bbolt version"
	case nativeEndian.Uint64(m[metaSumLen:]) != h.Sum64():
		bm.validationFailed = "checksum mismatch"
	default:
		bm.valid = true
	}
	return bm
}

// checkFile checks path's meta pages, freelist and root page. A missing
// or empty file is fine (bbolt creates one).
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if fi.Size() == 0 {
		return nil
	}
	if what := checkPages(f, fi.Size()); what != "" {
		return damaged(path, what)
	}
	return nil
}

// checkPages returns what is wrong with the file's fixed structures, or "".
func checkPages(r io.ReaderAt, size int64) string {
	read := func(off int64, n int) []byte {
		if off < 0 || n < 0 || off+int64(n) > size {
			return nil
		}
		b := make([]byte, n)
		if _, err := r.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return nil
		}
		return b
	}
	// The page size, as bbolt finds it: from meta page 0, else from a valid
	// meta page 1 at one of the possible offsets.
	pageSize := 0
	if m := parseMeta(read(0, pageHeaderSize+metaSize)); m.valid {
		pageSize = int(m.pageSize)
	} else {
		for i := 0; i <= 14 && pageSize == 0; i++ {
			pos := int64(1024) << i
			if m := parseMeta(read(pos, pageHeaderSize+metaSize)); m.valid {
				pageSize = int(m.pageSize)
			}
		}
	}
	if pageSize == 0 {
		return "both meta pages are invalid (not a bbolt file, or overwritten)"
	}
	if pageSize < 1024 || pageSize > maxPageSize || pageSize&(pageSize-1) != 0 {
		return fmt.Sprintf("meta page: page size %d", pageSize)
	}
	if size < 2*int64(pageSize) {
		return fmt.Sprintf("file of %d bytes is shorter than its two meta pages", size)
	}
	// The meta page bbolt uses: the one with the higher transaction id if
	// it is valid, else the other.
	hi := parseMeta(read(0, pageSize))
	lo := parseMeta(read(int64(pageSize), pageSize))
	if lo.txid > hi.txid {
		hi, lo = lo, hi
	}
	var m boltMeta
	switch {
	case hi.valid:
		m = hi
	case lo.valid:
		m = lo
	default:
		return "both meta pages are invalid (" + hi.validationFailed + ")"
	}
	if int(m.pageSize) != pageSize {
		return fmt.Sprintf("meta pages disagree on the page size (%d, %d)", pageSize, m.pageSize)
	}
	ps := uint64(pageSize)
	if m.pgid < 3 || m.pgid > uint64(size)/ps {
		return fmt.Sprintf("meta page: high-water mark page %d, but the file holds %d pages (truncated?)", m.pgid, uint64(size)/ps)
	}
	header := func(id uint64) (flags uint16, count uint16, overflow uint32, ok bool) {
		b := read(int64(id*ps), pageHeaderSize)
		if b == nil || nativeEndian.Uint64(b) != id {
			return 0, 0, 0, false
		}
		return nativeEndian.Uint16(b[8:]), nativeEndian.Uint16(b[10:]), nativeEndian.Uint32(b[12:]), true
	}
	if m.root < 2 || m.root >= m.pgid {
		return fmt.Sprintf("meta page: root page %d out of range [2, %d)", m.root, m.pgid)
	}
	flags, _, overflow, ok := header(m.root)
	if !ok || (flags != flagBranch && flags != flagLeaf) || m.root+uint64(overflow) >= m.pgid {
		return fmt.Sprintf("root page %d is not a tree page", m.root)
	}
	if m.freelist == noFreelist {
		return ""
	}
	if m.freelist < 2 || m.freelist >= m.pgid {
		return fmt.Sprintf("meta page: freelist page %d out of range [2, %d)", m.freelist, m.pgid)
	}
	flags, count, overflow, ok := header(m.freelist)
	if !ok || flags != flagFreelist {
		return fmt.Sprintf("invalid freelist page %d", m.freelist)
	}
	last := m.freelist + uint64(overflow)
	if last >= m.pgid || last < m.freelist {
		return fmt.Sprintf("freelist page %d: overflow %d past the high-water mark", m.freelist, overflow)
	}
	span := int(uint64(overflow)+1) * pageSize
	body := read(int64(m.freelist*ps), span)
	if body == nil {
		return fmt.Sprintf("freelist page %d cannot be read", m.freelist)
	}
	idx, n := 0, uint64(count)
	if count == 0xFFFF {
		idx, n = 1, nativeEndian.Uint64(body[pageHeaderSize:])
	}
	if n > m.pgid || pageHeaderSize+(uint64(idx)+n)*8 > uint64(span) {
		return fmt.Sprintf("freelist page %d: %d entries do not fit", m.freelist, n)
	}
	seen := make(map[uint64]bool, n)
	for i := range n {
		id := nativeEndian.Uint64(body[pageHeaderSize+(uint64(idx)+i)*8:])
		switch {
		case id < 2 || id >= m.pgid:
			return fmt.Sprintf("freelist: page %d out of range [2, %d)", id, m.pgid)
		case seen[id]:
			return fmt.Sprintf("freelist: page %d listed twice", id)
		case id == m.root || (id >= m.freelist && id <= last):
			return fmt.Sprintf("freelist: page %d is in use", id)
		}
		seen[id] = true
	}
	return ""
}

// checkRoots checks the root page of each top-level bucket: in range and a
// tree page that says it is that page. Runs under protect.
func checkRoots(tx *bolt.Tx) error {
	pageSize := int64(tx.DB().Info().PageSize)
	pages := uint64(tx.Size() / pageSize)
	f, err := os.Open(tx.DB().Path())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		root := uint64(b.Root())
		if root == 0 { // inline bucket: stored in its parent's page
			return nil
		}
		hdr := make([]byte, pageHeaderSize)
		if root < 2 || root >= pages {
			return errDamage{fmt.Sprintf("bucket %q: root page %d out of range", name, root)}
		}
		if _, err := f.ReadAt(hdr, int64(root)*pageSize); err != nil {
			return errDamage{fmt.Sprintf("bucket %q: root page %d cannot be read", name, root)}
		}
		flags := nativeEndian.Uint16(hdr[8:])
		if nativeEndian.Uint64(hdr) != root || (flags != flagBranch && flags != flagLeaf) {
			return errDamage{fmt.Sprintf("bucket %q: root page %d is not a tree page", name, root)}
		}
		return nil
	})
}

// Check reads every page of the state.db at path and checks the data's
// consistency (see [DB.Check]). It opens the file read-only and fails with
// [ErrLocked] while virtkey serves it; it takes time in proportion to the
// file's size. Values sealed by a key store are checked for shape only.
func Check(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := checkFile(path); err != nil {
		return err
	}
	var bdb *bolt.DB
	err := protect(func() (err error) {
		bdb, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: DefaultLockTimeout})
		return err
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w (%s is locked; stop virtkey to check it)", ErrLocked, path)
	}
	var p panicked
	if errors.As(err, &p) {
		return damaged(path, p.Error())
	}
	if err != nil {
		return damaged(path, err.Error())
	}
	d := &DB{bolt: bdb}
	if d.verify, err = newVerifier(path, bdb.Info().PageSize); err != nil {
		bdb.Close()
		return err
	}
	defer d.closeBolt()
	if what := d.check(); what != "" {
		return damaged(path, what)
	}
	return nil
}

// Check reads every page of the open database (bbolt's own check) and
// checks its data: every index entry names a credential of that RP, every
// credential is indexed, counters are 8 bytes and, in a bound DB, every
// sealed value opens. It returns an [ErrDamaged] error describing the first
// problems found. It reads the whole file: minutes for a large store.
func (d *DB) Check() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if what := d.check(); what != "" {
		return d.markDamaged("check: " + what)
	}
	return nil
}

// check returns a description of the problems found, or "".
func (d *DB) check() string {
	const maxProblems = 5
	var problems []string
	add := func(s string) bool {
		problems = append(problems, s)
		return len(problems) < maxProblems
	}
	err := protect(func() error {
		return d.bolt.View(func(tx *bolt.Tx) error {
			if what := d.checkPages(tx); what != "" {
				add(what)
				return nil
			}
			d.checkData(tx, add)
			return nil
		})
	})
	if err != nil {
		add(err.Error())
	}
	if len(problems) == 0 {
		return ""
	}
	var b bytes.Buffer
	for i, p := range problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// checkPages walks every tree from the root with the verifier (no bbolt
// traversal before it is known to end) and reconciles the pages reached
// with the freelist: every page below the high-water mark is a meta page,
// the freelist, in a tree or free — and never both of the last two.
func (d *DB) checkPages(tx *bolt.Tx) string {
	v := d.verify
	if _, err := v.rootPage(tx); err != nil {
		return err.Error()
	}
	m := v.meta
	pages := d.pages(tx)
	used := map[uint64]bool{0: true, 1: true}
	if err := v.walk(m.root, pages, true, used, 0); err != nil {
		return err.Error()
	}
	free := map[uint64]bool{}
	if m.freelist != noFreelist {
		ids, overflow, err := v.freelist(m.freelist, pages)
		if err != nil {
			return err.Error()
		}
		for i := uint64(0); i <= overflow; i++ {
			if used[m.freelist+i] {
				return fmt.Sprintf("freelist page %d is also in a tree", m.freelist+i)
			}
			used[m.freelist+i] = true
		}
		for _, id := range ids {
			free[id] = true
		}
	}
	for id := uint64(2); id < pages; id++ {
		switch {
		case used[id] && free[id]:
			return fmt.Sprintf("page %d is in use and free (a later write would overwrite it)", id)
		case !used[id] && !free[id]:
			return fmt.Sprintf("page %d is neither in use nor free", id)
		}
	}
	return ""
}

// freelist reads the freelist page: its page ids and overflow.
func (v *verifier) freelist(id, pages uint64) ([]uint64, uint64, error) {
	ps := uint64(v.pageSize)
	hdr := make([]byte, pageHeaderSize)
	if _, err := v.f.ReadAt(hdr, int64(id*ps)); err != nil || nativeEndian.Uint64(hdr) != id || nativeEndian.Uint16(hdr[8:]) != flagFreelist {
		return nil, 0, errDamage{fmt.Sprintf("invalid freelist page %d", id)}
	}
	overflow := uint64(nativeEndian.Uint32(hdr[12:]))
	if id+overflow >= pages {
		return nil, 0, errDamage{fmt.Sprintf("freelist page %d: overflow past the high-water mark", id)}
	}
	body := make([]byte, (overflow+1)*ps)
	if _, err := v.f.ReadAt(body, int64(id*ps)); err != nil {
		return nil, 0, errDamage{fmt.Sprintf("freelist page %d cannot be read", id)}
	}
	idx, n := uint64(0), uint64(nativeEndian.Uint16(hdr[10:]))
	if n == 0xFFFF {
		idx, n = 1, nativeEndian.Uint64(body[pageHeaderSize:])
	}
	if n > pages || pageHeaderSize+(idx+n)*8 > uint64(len(body)) {
		return nil, 0, errDamage{fmt.Sprintf("freelist page %d: %d entries do not fit", id, n)}
	}
	ids := make([]uint64, n)
	for i := range n {
		ids[i] = nativeEndian.Uint64(body[pageHeaderSize+(idx+i)*8:])
	}
	return ids, overflow, nil
}

// checkData checks the buckets' contents, after checkPages; add returns
// false to stop.
func (d *DB) checkData(tx *bolt.Tx, add func(string) bool) {
	if tx.Bucket(bucketMeta) == nil {
		add("bucket \"meta\" is missing")
		return
	}
	v := tx.Bucket(bucketMeta).Get(keySchema)
	if len(v) != 1 || v[0] == 0 || v[0] > SchemaVersion {
		add(fmt.Sprintf("schema record %x", v))
		return
	}
	sealed := sealedSchema(v[0])
	if v[0] == schemaPlainV1 || v[0] == schemaSealedV1 {
		d.checkDataV1(tx, sealed, add)
	} else {
		d.checkDataV2(tx, sealed, add)
	}
	if sealed && d.bind != nil {
		if _, what := d.readHead(tx); what != "" {
			add(what)
		}
	}
}

func checkCounters(tx *bolt.Tx, add func(string) bool) {
	tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
		if len(k) != 32 || len(v) != 8 {
			if !add(fmt.Sprintf("counter %x: %d-byte value", k, len(v))) {
				return errStop
			}
		}
		return nil
	})
}

// checkDataV2 checks a layout 2 file (index.go): every credential opens
// (shape only in a sealed file without its key store) and has its two
// index entries, every index entry names a credential, and the counts
// agree.
func (d *DB) checkDataV2(tx *bolt.Tx, sealed bool, add func(string) bool) {
	for _, name := range append([][]byte{bucketMeta}, dataBuckets...) {
		if tx.Bucket(name) == nil {
			add(fmt.Sprintf("bucket %q is missing", name))
			return
		}
	}
	creds, index := tx.Bucket(bucketCreds), tx.Bucket(bucketIndex)
	type rpCount struct{ all, visible uint32 }
	opened := !sealed || d.bind != nil
	want := map[string]*rpCount{} // by rpKey, from the credentials (when they open)
	n, unlisted := 0, 0
	err := creds.ForEach(func(k, v []byte) error {
		n++
		if len(k) != shortKey {
			if !add(fmt.Sprintf("credential key %x: %d bytes", k, len(k))) {
				return errStop
			}
			return nil
		}
		if !opened {
			if len(v) < minSealed {
				if !add(fmt.Sprintf("credential %x: sealed value of %d bytes", k, len(v))) {
					return errStop
				}
			}
			return nil
		}
		e, err := d.openEntry(k, v)
		if err != nil {
			if !add(err.Error()) {
				return errStop
			}
			return nil
		}
		if e.unlisted {
			unlisted++
			return nil
		}
		if lv := index.Get(d.listKey(e)); len(lv) != 1 || lv[0] != e.flags() {
			if !add(fmt.Sprintf("credential %x is not listed under its RP", k)) {
				return errStop
			}
		}
		if index.Get(d.userIndexKey(e)) == nil {
			if !add(fmt.Sprintf("credential %x is not indexed by its user", k)) {
				return errStop
			}
		}
		rk := string(d.rpKey(e.rpIDHash))
		c := want[rk]
		if c == nil {
			c = &rpCount{}
			want[rk] = c
		}
		c.all++
		if !e.hidden {
			c.visible++
		}
		return nil
	})
	if err != nil {
		return
	}
	var rps, listed, users int
	var sum uint64
	err = index.ForEach(func(k, v []byte) error {
		bad := ""
		switch {
		case len(k) < shortKey+1:
			bad = "too short"
		case k[shortKey] == tagRP && len(k) == shortKey+1 && len(v) == 8:
			rps++
			all, visible := binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:])
			sum += uint64(all)
			if c := want[string(k[:shortKey])]; all == 0 || visible > all || (opened && (c == nil || c.all != all || c.visible != visible)) {
				bad = fmt.Sprintf("RP counts %d, %d disagree with its credentials", all, visible)
			}
		case k[shortKey] == tagList && len(k) == shortKey+1+cursorSize && len(v) == 1:
			listed++
			if creds.Get(k[len(k)-shortKey:]) == nil {
				bad = "names no credential"
			}
		case k[shortKey] == tagUser && len(k) == shortKey+1+2*shortKey && len(v) == 0:
			users++
			if creds.Get(k[len(k)-shortKey:]) == nil {
				bad = "names no credential"
			}
		default:
			bad = "malformed"
		}
		if bad != "" && !add(fmt.Sprintf("index entry %x: %s", k, bad)) {
			return errStop
		}
		return nil
	})
	if err != nil {
		return
	}
	if listed != n-unlisted || users != n-unlisted || sum != uint64(n-unlisted) {
		if !add(fmt.Sprintf("%d credentials (%d unlisted), %d list entries, %d user entries, %d counted under RPs", n, unlisted, listed, users, sum)) {
			return
		}
	}
	meta := tx.Bucket(bucketMeta)
	for _, c := range []struct {
		name []byte
		n    int
	}{{keyCount, n}, {keyRPCount, rps}} {
		if v := meta.Get(c.name); len(v) != 8 || binary.BigEndian.Uint64(v) != uint64(c.n) {
			if !add(fmt.Sprintf("meta %s %x, %d found", c.name, v, c.n)) {
				return
			}
		}
	}
	checkCounters(tx, add)
}

// checkDataV1 checks a layout 1 file (migrate.go), which is migrated
// when it is opened or bound.
func (d *DB) checkDataV1(tx *bolt.Tx, sealed bool, add func(string) bool) {
	for _, name := range [][]byte{bucketCreds, bucketByRP, bucketSettings, bucketCounters} {
		if tx.Bucket(name) == nil {
			add(fmt.Sprintf("bucket %q is missing", name))
			return
		}
	}
	creds := tx.Bucket(bucketCreds)
	indexed := 0
	byRP := tx.Bucket(bucketByRP)
	err := byRP.ForEach(func(k, v []byte) error {
		b := byRP.Bucket(k)
		if b == nil {
			if !add(fmt.Sprintf("index key %x is not a bucket", k)) {
				return errStop
			}
			return nil
		}
		return b.ForEach(func(id, _ []byte) error {
			indexed++
			cv := creds.Get(id)
			if cv == nil {
				if !add(fmt.Sprintf("index entry %x has no credential", id)) {
					return errStop
				}
				return nil
			}
			rp, _, err := d.openCredIn(sealed, id, cv)
			if err != nil {
				if !add(err.Error()) {
					return errStop
				}
				return nil
			}
			if rp != nil && !bytes.Equal(d.indexKeyIn(sealed, rp), k) {
				if !add(fmt.Sprintf("credential %x is indexed under another RP", id)) {
					return errStop
				}
			}
			return nil
		})
	})
	if err != nil {
		return
	}
	n := creds.Stats().KeyN
	if n != indexed {
		if !add(fmt.Sprintf("%d credentials, %d index entries", n, indexed)) {
			return
		}
	}
	if v := tx.Bucket(bucketMeta).Get(keyCount); len(v) != 8 || binary.BigEndian.Uint64(v) != uint64(n) {
		if !add(fmt.Sprintf("credential count %x, %d credentials", v, n)) {
			return
		}
	}
	checkCounters(tx, add)
}

var errStop = errors.New("stop")
