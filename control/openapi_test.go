package control_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/virtkey/virtkey/control"
	"github.com/virtkey/virtkey/control/internal/apitest"
)

// The document lists exactly the server's routes.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	doc := apitest.Parse(t)
	srv := control.NewServer(control.Options{})
	var documented, served []string
	for p, ops := range doc.Paths {
		for m := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	for _, r := range srv.Routes() {
		served = append(served, r.Method+" "+r.Pattern)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("documented routes:\n%s\nserved routes:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
}

// Every schema has exactly the Go type's JSON fields, and a field the
// document calls required is never omitted by the Go type.
func TestOpenAPISchemas(t *testing.T) {
	t.Parallel()
	doc := apitest.Parse(t)
	types := map[string]any{
		"Error": control.ErrorResponse{}, "Overrides": control.Overrides{}, "KeyConfig": control.KeyConfig{},
		"Key": control.KeyInfo{}, "CredentialParams": control.CredentialParams{}, "Credential": control.Credential{},
		"PlaywrightCredential": control.PlaywrightCredential{}, "CredentialProps": control.CredentialProps{},
		"UVRequest": control.UVRequest{}, "PresenceRequest": control.PresenceRequest{},
		"PendingPresence": control.PendingPresence{}, "PresenceAnswer": control.PresenceAnswer{},
		"PINRequest": control.PINRequest{}, "Event": control.Event{},
	}
	for name, s := range doc.Components.Schemas {
		if s.Type != "object" {
			continue
		}
		v, ok := types[name]
		if !ok {
			t.Errorf("schema %s has no Go type in this test", name)
			continue
		}
		fields := map[string]bool{} // name → omitempty
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			tag := rt.Field(i).Tag.Get("json")
			if tag == "" || tag == "-" {
				continue
			}
			n, opt, _ := strings.Cut(tag, ",")
			fields[n] = strings.Contains(opt, "omitempty")
		}
		for p := range s.Properties {
			if _, ok := fields[p]; !ok {
				t.Errorf("%s.%s is documented but not in %T", name, p, v)
			}
		}
		for f := range fields {
			if _, ok := s.Properties[f]; !ok {
				t.Errorf("%T field %s is not documented in %s", v, f, name)
			}
		}
		isResponse := name != "KeyConfig" && name != "CredentialParams" && name != "CredentialProps"
		for _, r := range s.Required {
			if omit, ok := fields[r]; ok && omit && isResponse {
				t.Errorf("%s.%s is required but %T omits it when empty", name, r, v)
			}
		}
	}
}

// Every documented operation answers as documented (HTTP layer; the real
// key runs the same check in control/vkey).
func TestOpenAPIExercise(t *testing.T) {
	t.Parallel()
	f := startUnix(t, control.Options{})
	a := &apitest.API{T: t, HC: f.HC, Base: f.Base, Doc: apitest.Parse(t)}
	a.Exercise(apitest.Options{})
}
