package store

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrDamaged reports a damaged state.db: at Open, a file that must not be
// used; later, a call that met a damaged page (the DB is then read-only).
var ErrDamaged = errors.New("state.db is damaged")

// damageError is an [ErrDamaged] error with what was found and the fix.
type damageError struct {
	path, what string
}

func damaged(path, what string) error { return &damageError{path: path, what: what} }

func (e *damageError) Error() string {
	return fmt.Sprintf("state.db is damaged: %s; restore %s from a backup or move it away", e.what, e.path)
}

func (e *damageError) Is(target error) bool { return target == ErrDamaged }

// errDamage is returned from inside a transaction for an inconsistency
// found in the data; protected turns it into a damageError.
type errDamage struct{ what string }

func (e errDamage) Error() string { return e.what }

// inconsistent reports damage found in the data (a dangling index entry, a
// value of the wrong shape, a sealed value that does not open).
func (d *DB) inconsistent(what string) error { return errDamage{what} }

// panicked is a panic recovered by protect: a bbolt assertion on a damaged
// page, or a fault reading the memory-mapped file.
type panicked struct{ v any }

func (p panicked) Error() string {
	if err, ok := p.v.(error); ok {
		return fmt.Sprintf("reading the file failed (%v)", err)
	}
	return fmt.Sprintf("bbolt: %v", p.v)
}

// protect runs fn and turns a panic into a panicked error. bbolt reads the
// file through mmap, so a damaged page pointer can fault; SetPanicOnFault
// makes such a fault a panic of this goroutine (bbolt runs transaction
// functions on the caller's goroutine) instead of a crash of the process.
// bbolt rolls a transaction back when its function panics.
func protect(fn func() error) (err error) {
	prev := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(prev)
		if r := recover(); r != nil {
			err = panicked{r}
		}
	}()
	return fn()
}

// protected runs fn with protect. Damage found — a panic, or an errDamage
// returned by fn — makes the DB read-only, is logged the first time, and
// fails this call with an [ErrDamaged] error. Called with d.mu held.
func (d *DB) protected(op string, fn func() error) error {
	err := protect(fn)
	var p panicked
	var dm errDamage
	switch {
	case errors.As(err, &p):
		return d.markDamaged(op + ": " + p.Error())
	case errors.As(err, &dm):
		return d.markDamaged(op + ": " + dm.what)
	}
	return err
}

// markDamaged records damage. Called with d.mu held.
func (d *DB) markDamaged(what string) error {
	err := damaged(d.bolt.Path(), what)
	if d.damage == nil {
		d.damage = err
		d.log.Error("state.db is damaged; the store is read-only until virtkey restarts (credentials that can still be read keep working)",
			"path", d.bolt.Path(), "what", what)
	}
	return err
}

// Damaged returns the damage that made the DB read-only, or nil.
func (d *DB) Damaged() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.damage
}
