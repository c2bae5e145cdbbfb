package api

import "net/http"

// registerSidecarRoutes adds the routes sidecars call (sync, instance reports) and
// GET /api/v1/sidecars/{id}/instances. Owned by the sidecar work (issue 3); a stub until then.
func (a *API) registerSidecarRoutes(mux *http.ServeMux) {}
