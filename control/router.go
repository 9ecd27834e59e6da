package control

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// router matches "METHOD /v1/a/{x}/b" patterns segment by segment on the
// escaped path, so a base64 credential id may contain an escaped "/". It
// answers unknown paths 404 and wrong methods 405, both in JSON.
type router struct {
	routes []route
}

type route struct {
	method  string
	pattern string
	segs    []string
	h       func(w http.ResponseWriter, r *http.Request, p params)
}

// params are a matched route's wildcard values, unescaped.
type params map[string]string

func (rt *router) handle(method, pattern string, h func(http.ResponseWriter, *http.Request, params)) {
	rt.routes = append(rt.routes, route{method: method, pattern: pattern, segs: strings.Split(strings.Trim(pattern, "/"), "/"), h: h})
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	var allowed []string
	for _, ro := range rt.routes {
		p, ok := ro.match(segs)
		if !ok {
			continue
		}
		if ro.method != r.Method {
			allowed = append(allowed, ro.method)
			continue
		}
		ro.h(w, r, p)
		return
	}
	if allowed != nil {
		sort.Strings(allowed)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here; allowed: "+strings.Join(allowed, ", "))
		return
	}
	writeError(w, http.StatusNotFound, "no such route: "+r.URL.Path)
}

func (ro *route) match(segs []string) (params, bool) {
	if len(segs) != len(ro.segs) {
		return nil, false
	}
	var p params
	for i, s := range ro.segs {
		if len(s) > 2 && s[0] == '{' && s[len(s)-1] == '}' {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return nil, false
			}
			if p == nil {
				p = params{}
			}
			p[s[1:len(s)-1]] = v
			continue
		}
		if segs[i] != s {
			return nil, false
		}
	}
	return p, true
}

// Route is one documented route of the API.
type Route struct{ Method, Pattern string }

// Routes lists the API's routes (the OpenAPI test checks them).
func (s *Server) Routes() []Route {
	out := make([]Route, 0, len(s.mux.routes))
	for _, ro := range s.mux.routes {
		out = append(out, Route{ro.method, ro.pattern})
	}
	return out
}
