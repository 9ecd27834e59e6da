package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/virtkey/virtkey/ctap2"
)

// The Desktop Notifications Specification (org.freedesktop.Notifications,
// version 1.2).
const (
	notifyName      = "org.freedesktop.Notifications"
	notifyPath      = dbus.ObjectPath("/org/freedesktop/Notifications")
	notifyInterface = "org.freedesktop.Notifications"
)

// Actions offered on the notification.
const (
	actionAllow = "allow"
	actionDeny  = "deny"
)

// Notify asks the user with a desktop notification carrying Allow and
// Deny actions, over the session D-Bus (org.freedesktop.Notifications, the
// service GNOME Shell, KDE Plasma, dunst, mako and others provide).
//
// The Allow action approves. Deny, or closing the notification without
// choosing, declines (ctap2.ErrDeclined). When ctx ends (CTAPHID_CANCEL,
// the 30 s user-action timeout) the notification is withdrawn with
// CloseNotification and ctx.Err() returned. Signals are accepted only from
// the connection that owns org.freedesktop.Notifications, so no other
// program on the bus can answer for the user. One prompt at a time.
type Notify struct {
	conn   *dbus.Conn
	log    *slog.Logger
	markup bool // the server renders body markup: escape &, <, >
	sem    turn
}

// notifyCallTimeout bounds each D-Bus method call.
const notifyCallTimeout = 10 * time.Second

// DialNotify connects to the D-Bus session bus at address (empty: the
// session bus, from $DBUS_SESSION_BUS_ADDRESS, else
// $XDG_RUNTIME_DIR/bus; never an autolaunched bus) and returns a Notify
// using it. It asks the notification server for its capabilities and logs
// a warning if the server is missing or cannot show actions — servers are
// often started on demand, so that is not an error. Close releases the
// connection.
func DialNotify(address string, log *slog.Logger) (*Notify, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if address == "" {
		var err error
		if address, err = sessionBusAddress(); err != nil {
			return nil, err
		}
	}
	conn, err := dbus.Connect(address)
	if err != nil {
		return nil, fmt.Errorf("presence: connecting to the session bus: %w", err)
	}
	if err := conn.AddMatchSignal(
		dbus.WithMatchSender(notifyName),
		dbus.WithMatchObjectPath(notifyPath),
		dbus.WithMatchInterface(notifyInterface),
	); err != nil {
		conn.Close()
		return nil, fmt.Errorf("presence: subscribing to notification signals: %w", err)
	}
	n := &Notify{conn: conn, log: log, sem: newTurn()}

	ctx, cancel := context.WithTimeout(context.Background(), notifyCallTimeout)
	defer cancel()
	var caps []string
	if err := conn.Object(notifyName, notifyPath).CallWithContext(ctx, notifyInterface+".GetCapabilities", 0).Store(&caps); err != nil {
		log.Warn("presence: no desktop notification server answers yet; prompts will fail until one runs", "err", err)
	} else {
		if !slices.Contains(caps, "actions") {
			log.Warn("presence: the notification server does not show actions: Allow/Deny cannot be chosen, requests will time out", "capabilities", caps)
		}
		n.markup = slices.Contains(caps, "body-markup")
	}
	return n, nil
}

// sessionBusAddress finds the session bus like sd-bus does.
func sessionBusAddress() (string, error) {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
		return a, nil
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		p := filepath.Join(dir, "bus")
		if _, err := os.Stat(p); err == nil {
			return "unix:path=" + dbus.EscapeBusAddressValue(p), nil
		}
	}
	return "", errors.New("presence: no session D-Bus: neither DBUS_SESSION_BUS_ADDRESS nor $XDG_RUNTIME_DIR/bus is set (--presence notify needs a desktop session)")
}

// Close closes the bus connection.
func (n *Notify) Close() error { return n.conn.Close() }

// Confirm shows the notification and waits for the answer.
func (n *Notify) Confirm(ctx context.Context, req ctap2.PresenceRequest) error {
	if err := n.sem.wait(ctx); err != nil {
		return err
	}
	defer n.sem.done()

	// Subscribe before Notify: a signal may arrive before its reply.
	sigs := make(chan *dbus.Signal, 16)
	n.conn.Signal(sigs)
	defer n.conn.RemoveSignal(sigs)

	// Only the owner of the well-known name may answer.
	var owner string
	err := n.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, notifyName).Store(&owner)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("presence: no desktop notification server: %w", err)
	}

	body := "Allow " + Describe(req) + "?"
	if req.UV {
		body += "\nAllowing also verifies you to the site."
	}
	if n.markup {
		body = escapeMarkup(body)
	}
	hints := map[string]dbus.Variant{
		"urgency":  dbus.MakeVariant(byte(2)), // critical: stays until answered
		"category": dbus.MakeVariant("device"),
	}
	// The call itself is not cut short by ctx: once it is sent, a
	// notification may be showing, and only its id lets us withdraw it.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyCallTimeout)
	defer cancel()
	var id uint32
	err = n.conn.Object(notifyName, notifyPath).CallWithContext(callCtx, notifyInterface+".Notify", 0,
		"virtkey",              // app_name
		uint32(0),              // replaces_id
		"security-high",        // app_icon
		"Security key request", // summary
		body,                   // body
		[]string{actionAllow, "Allow", actionDeny, "Deny"},
		hints,
		int32(0), // expire_timeout: never; ctx bounds the wait
	).Store(&id)
	if err != nil {
		return fmt.Errorf("presence: showing the notification: %w", err)
	}
	n.log.Debug("notification shown", "id", id, "op", req.Op)

	for {
		if ctx.Err() != nil { // before any answer already queued
			n.close(id)
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			n.close(id)
			return ctx.Err()
		case s, ok := <-sigs:
			if !ok {
				return errors.New("presence: the session bus connection closed")
			}
			if s.Sender != owner || s.Path != notifyPath || len(s.Body) < 2 {
				continue
			}
			if sid, _ := s.Body[0].(uint32); sid != id {
				continue
			}
			switch s.Name {
			case notifyInterface + ".ActionInvoked":
				action, _ := s.Body[1].(string)
				switch action {
				case actionAllow:
					n.close(id)
					return nil
				case actionDeny:
					n.close(id)
					return ctap2.ErrDeclined
				}
				// "default" (a click on the body) or others: keep waiting.
			case notifyInterface + ".NotificationClosed":
				reason, _ := s.Body[1].(uint32)
				n.log.Debug("notification closed without an answer", "id", id, "reason", reason)
				return ctap2.ErrDeclined
			}
		}
	}
}

// close withdraws notification id; it may already be gone.
func (n *Notify) close(id uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), notifyCallTimeout)
	defer cancel()
	n.conn.Object(notifyName, notifyPath).CallWithContext(ctx, notifyInterface+".CloseNotification", 0, id)
}

// escapeMarkup escapes the characters the notification body markup gives
// meaning to.
func escapeMarkup(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
