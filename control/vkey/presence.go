package vkey

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/ctap2"
)

// Presence is the ctap2.Presence a controller drives: it approves,
// refuses, queues the request for the test to answer, or never answers,
// as its mode says. With no mode set it asks a fallback provider (the one
// `virtkey run --presence` chose). Every request raises presenceRequested
// and presenceAnswered events.
type Presence struct {
	emit func(control.Event)

	mu           sync.Mutex
	mode         control.PresenceMode // "" asks fallback
	fallback     ctap2.Presence
	fallbackName string
	next         uint64
	pending      []*pendingReq
	closed       chan struct{}
	isClosed     bool
}

type pendingReq struct {
	info   control.PendingPresence
	answer chan bool // buffered: one answer
}

// NewPresence returns a Presence in mode. With mode "", fallback (named
// fallbackName in the key's description) answers until a mode is set.
func NewPresence(mode control.PresenceMode, fallback ctap2.Presence, fallbackName string) *Presence {
	return &Presence{mode: mode, fallback: fallback, fallbackName: fallbackName, closed: make(chan struct{}), emit: func(control.Event) {}}
}

// Mode is the current mode, or the fallback's name.
func (p *Presence) Mode() control.PresenceMode {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == "" {
		return control.PresenceMode(p.fallbackName)
	}
	return p.mode
}

// SetMode changes the mode for later requests; queued ones stay queued.
func (p *Presence) SetMode(m control.PresenceMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
}

// Pending lists the queued requests, oldest first.
func (p *Presence) Pending() []control.PendingPresence {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]control.PendingPresence, len(p.pending))
	for i, r := range p.pending {
		out[i] = r.info
	}
	return out
}

// Answer answers queued request id.
func (p *Presence) Answer(id string, approve bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.IndexFunc(p.pending, func(r *pendingReq) bool { return r.info.RequestID == id })
	if i < 0 {
		return fmt.Errorf("presence request %q: %w", id, control.ErrNotFound)
	}
	r := p.pending[i]
	p.pending = slices.Delete(p.pending, i, i+1)
	r.answer <- approve
	return nil
}

// Close refuses every queued request and every later one, and ends the
// waits of timeout mode: a key being removed answers its clients.
// It reports whether a request was waiting.
func (p *Presence) Close() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed {
		return false
	}
	p.isClosed = true
	close(p.closed)
	waiting := len(p.pending) > 0
	for _, r := range p.pending {
		r.answer <- false
	}
	p.pending = nil
	return waiting
}

func (p *Presence) event(typ string, id string, req ctap2.PresenceRequest, status string) {
	p.emit(control.Event{Type: typ, Time: time.Now().UTC(), RequestID: id, Op: req.Op, RPID: req.RPID, Status: status})
}

// Confirm implements ctap2.Presence.
func (p *Presence) Confirm(ctx context.Context, req ctap2.PresenceRequest) error {
	p.mu.Lock()
	p.next++
	id := strconv.FormatUint(p.next, 10)
	mode, fallback, closed := p.mode, p.fallback, p.isClosed
	var r *pendingReq
	if mode == control.PresenceManual && !closed {
		r = &pendingReq{answer: make(chan bool, 1), info: control.PendingPresence{
			RequestID: id, Op: req.Op, RPID: req.RPID, UserName: req.UserName, Since: time.Now().UTC(),
		}}
		p.pending = append(p.pending, r)
	}
	p.event(control.EventPresenceRequested, id, req, "")
	p.mu.Unlock()

	err := p.wait(ctx, req, mode, fallback, closed, r)
	status := "approved"
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		status = "timeout"
	case errors.Is(err, context.Canceled):
		status = "cancelled"
	default:
		status = "denied"
	}
	p.mu.Lock()
	p.event(control.EventPresenceAnswered, id, req, status)
	p.mu.Unlock()
	return err
}

func (p *Presence) wait(ctx context.Context, req ctap2.PresenceRequest, mode control.PresenceMode, fallback ctap2.Presence, closed bool, r *pendingReq) error {
	if closed {
		return ctap2.ErrDeclined
	}
	switch mode {
	case control.PresenceAuto:
		return nil
	case control.PresenceDeny:
		return ctap2.ErrDeclined
	case control.PresenceTimeout:
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.closed:
			return ctap2.ErrDeclined
		}
	case control.PresenceManual:
		select {
		case ok := <-r.answer:
			if ok {
				return nil
			}
			return ctap2.ErrDeclined
		case <-ctx.Done():
			p.mu.Lock()
			p.pending = slices.DeleteFunc(p.pending, func(x *pendingReq) bool { return x == r })
			p.mu.Unlock()
			return ctx.Err()
		}
	}
	if fallback == nil {
		return nil
	}
	return fallback.Confirm(ctx, req)
}
