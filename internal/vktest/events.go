package vktest

import (
	"context"
	"testing"
	"time"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/client"
)

// NextEvent reads events from a control API event stream until one
// matches (any one where match is nil), failing t after 15 s or on a
// stream error.
func NextEvent(t testing.TB, es *client.EventStream, match func(control.Event) bool) control.Event {
	t.Helper()
	type res struct {
		ev  control.Event
		err error
	}
	deadline := time.After(15 * time.Second)
	for {
		ch := make(chan res, 1)
		go func() { ev, err := es.Next(); ch <- res{ev, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("event stream: %v", r.err)
			}
			if match == nil || match(r.ev) {
				return r.ev
			}
		case <-deadline:
			t.Fatal("no matching event within 15 s")
		}
	}
}

// WaitControl waits up to 10 s for the control API of a freshly started
// key to answer.
func WaitControl(t testing.TB, c *client.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Keys(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("control API not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
