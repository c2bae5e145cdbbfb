package web

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/gatehousedb/gatehouse"
)

// sidecar is the API's sidecar answer: the sidecar and the control-plane URL its instances use.
type sidecar struct {
	gatehouse.Sidecar
	ControlPlaneURL string `json:"control_plane_url"`
}

func (c *Console) sidecars(w http.ResponseWriter, r *http.Request, s *session) {
	var list []sidecar
	if err := c.call(r, s, "GET", "/api/v1/sidecars", nil, &list); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Sidecars", "sidecars")
	pg.Data = list
	c.render(w, r, http.StatusOK, "sidecars", pg)
}

var sidecarFields = []string{"display_name", "hostname", "public_key", "allow_unsupported_queries"}

type sidecarFormData struct {
	// Confirm asks the admin to confirm "Allow unsupported queries" (the step the JavaScript
	// modal does in place, for browsers without it).
	Confirm bool
}

func (c *Console) sidecarForm(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.call(r, s, "GET", "/api/v1/sidecars", nil, nil); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Register Sidecar", "sidecars")
	pg.Data = sidecarFormData{}
	c.render(w, r, http.StatusOK, "sidecar_form", pg)
}

func (c *Console) createSidecar(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	key := f.Get("public_key")
	// "Upload": a chosen file replaces the pasted text.
	if file, _, err := r.FormFile("public_key_file"); err == nil {
		b, err := io.ReadAll(io.LimitReader(file, 64<<10))
		file.Close()
		if err == nil && len(b) > 0 {
			key = string(b)
		}
	}
	f.Set("public_key", key)
	allow := f.Get("allow_unsupported_queries") == "on"
	pg := c.newPage(w, r, s, "Register Sidecar", "sidecars")
	pg.Form = f
	// The form has a hidden confirm_unsupported (set by the JavaScript modal) and, on the
	// confirmation step, a button of the same name: either one saying "yes" confirms.
	if allow && !slices.Contains(f["confirm_unsupported"], "yes") {
		pg.Data = sidecarFormData{Confirm: true}
		c.render(w, r, http.StatusOK, "sidecar_form", pg)
		return
	}
	in := map[string]any{"display_name": f.Get("display_name"), "hostname": f.Get("hostname"), "public_key": key, "allow_unsupported_queries": allow}
	var out sidecar
	if err := c.call(r, s, "POST", "/api/v1/sidecars", in, &out); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden {
			c.apiFailed(w, r, s, err)
			return
		}
		pg.setError(err, sidecarFields, nil)
		pg.Data = sidecarFormData{}
		c.render(w, r, errStatus(err), "sidecar_form", pg)
		return
	}
	c.flash(w, r, "Sidecar "+out.DisplayName+" registered. Note the Sidecar ID and the control-plane URL: the sidecar needs them to start.")
	http.Redirect(w, r, p("/sidecars/%s", out.ID), http.StatusSeeOther)
}

type sidecarData struct {
	Sidecar   sidecar
	Tab       string
	Instances []gatehouse.SidecarInstance
	Ports     []gatehouse.ListenerPort
	Bindings  []gatehouse.Binding
}

// sidecarPage loads the sidecar and what tab needs, or answers with the error page.
func (c *Console) sidecarPage(w http.ResponseWriter, r *http.Request, s *session, tab string) (*page, *sidecarData) {
	id := r.PathValue("id")
	d := &sidecarData{Tab: tab}
	if err := c.call(r, s, "GET", p("/api/v1/sidecars/%s", id), nil, &d.Sidecar); err != nil {
		c.apiFailed(w, r, s, err)
		return nil, nil
	}
	var err error
	switch tab {
	case "instances":
		err = c.call(r, s, "GET", p("/api/v1/sidecars/%s/instances", id), nil, &d.Instances)
	case "ports":
		err = c.call(r, s, "GET", p("/api/v1/sidecars/%s/ports", id), nil, &d.Ports)
	case "bindings":
		err = c.call(r, s, "GET", p("/api/v1/sidecars/%s/bindings", id), nil, &d.Bindings)
	}
	if err != nil {
		c.apiFailed(w, r, s, err)
		return nil, nil
	}
	pg := c.newPage(w, r, s, d.Sidecar.DisplayName, "sidecars")
	pg.Data = d
	return pg, d
}

func (c *Console) sidecarInstances(w http.ResponseWriter, r *http.Request, s *session) {
	if pg, _ := c.sidecarPage(w, r, s, "instances"); pg != nil {
		c.render(w, r, http.StatusOK, "sidecar", pg)
	}
}

// sidecarInstancesJSON feeds the Instances tab's live refresh.
func (c *Console) sidecarInstancesJSON(w http.ResponseWriter, r *http.Request, s *session) {
	var list []gatehouse.SidecarInstance
	if err := c.call(r, s, "GET", p("/api/v1/sidecars/%s/instances", r.PathValue("id")), nil, &list); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(errStatus(err))
		_, _ = w.Write([]byte(`{"error":"refused"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(list) // the browser went away
}

func (c *Console) sidecarPorts(w http.ResponseWriter, r *http.Request, s *session) {
	if pg, _ := c.sidecarPage(w, r, s, "ports"); pg != nil {
		c.render(w, r, http.StatusOK, "sidecar", pg)
	}
}

func (c *Console) sidecarBindings(w http.ResponseWriter, r *http.Request, s *session) {
	if pg, _ := c.sidecarPage(w, r, s, "bindings"); pg != nil {
		c.render(w, r, http.StatusOK, "sidecar", pg)
	}
}

func (c *Console) deleteSidecar(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	q := ""
	if r.PostFormValue("cascade") == "true" {
		q = "?cascade=true"
	}
	err := c.call(r, s, "DELETE", p("/api/v1/sidecars/%s", id)+q, nil, nil)
	c.afterDelete(w, r, s, err, "Sidecar deleted.", "/sidecars", p("/sidecars/%s", id))
}

// ---- listener ports

var portFields = []string{"port", "type", "version"}

type portFormData struct {
	Sidecar sidecar
	Types   []option
}

func (c *Console) portForm(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Register Port", "sidecars")
	c.showPortForm(w, r, s, pg, http.StatusOK)
}

func (c *Console) showPortForm(w http.ResponseWriter, r *http.Request, s *session, pg *page, status int) {
	d := portFormData{Types: databaseTypeOptions}
	if err := c.call(r, s, "GET", p("/api/v1/sidecars/%s", r.PathValue("id")), nil, &d.Sidecar); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg.Data = d
	c.render(w, r, status, "port_form", pg)
}

func (c *Console) createPort(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	in := map[string]any{"port": num(f.Get("port")), "type": f.Get("type"), "version": f.Get("version")}
	id := r.PathValue("id")
	if err := c.call(r, s, "POST", p("/api/v1/sidecars/%s/ports", id), in, nil); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden || apiCode(err) == gatehouse.ECodeNotFound {
			c.apiFailed(w, r, s, err)
			return
		}
		pg := c.newPage(w, r, s, "Register Port", "sidecars")
		pg.Form = f
		pg.setError(err, portFields, nil)
		c.showPortForm(w, r, s, pg, errStatus(err))
		return
	}
	c.flash(w, r, "Listener port "+f.Get("port")+" registered.")
	http.Redirect(w, r, p("/sidecars/%s/ports", id), http.StatusSeeOther)
}

func (c *Console) deletePort(w http.ResponseWriter, r *http.Request, s *session) {
	id, port := r.PathValue("id"), r.PathValue("port")
	q := ""
	if r.PostFormValue("cascade") == "true" {
		q = "?cascade=true"
	}
	err := c.call(r, s, "DELETE", p("/api/v1/sidecars/%s/ports/%s", id, port)+q, nil, nil)
	back := p("/sidecars/%s/ports", id)
	c.afterDelete(w, r, s, err, "Listener port "+port+" deleted.", back, back)
}

// ---- bindings

var bindingFields = []string{"port", "repository"}

type bindingFormData struct {
	Sidecar      sidecar
	Ports        []option
	Repositories []option
}

func (c *Console) bindingForm(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Create Binding", "sidecars")
	c.showBindingForm(w, r, s, pg, http.StatusOK)
}

func (c *Console) showBindingForm(w http.ResponseWriter, r *http.Request, s *session, pg *page, status int) {
	id := r.PathValue("id")
	var d bindingFormData
	var ports []gatehouse.ListenerPort
	var repos []gatehouse.Repository
	err := c.call(r, s, "GET", p("/api/v1/sidecars/%s", id), nil, &d.Sidecar)
	if err == nil {
		err = c.call(r, s, "GET", p("/api/v1/sidecars/%s/ports", id), nil, &ports)
	}
	if err == nil {
		err = c.call(r, s, "GET", "/api/v1/repositories", nil, &repos)
	}
	if err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	for _, pt := range ports {
		d.Ports = append(d.Ports, option{Value: strconv.Itoa(pt.Port), Label: strconv.Itoa(pt.Port) + " — " + typeLabel(pt.Type) + " " + pt.Version})
	}
	for _, rp := range repos {
		d.Repositories = append(d.Repositories, option{Value: rp.Name, Label: rp.Name + " — " + typeLabel(rp.Type) + " " + rp.Version})
	}
	pg.Data = d
	c.render(w, r, status, "binding_form", pg)
}

func (c *Console) createBinding(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	in := map[string]any{"port": num(f.Get("port")), "repository": f.Get("repository")}
	id := r.PathValue("id")
	if err := c.call(r, s, "POST", p("/api/v1/sidecars/%s/bindings", id), in, nil); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden || apiCode(err) == gatehouse.ECodeNotFound {
			c.apiFailed(w, r, s, err)
			return
		}
		pg := c.newPage(w, r, s, "Create Binding", "sidecars")
		pg.Form = f
		pg.setError(err, bindingFields, nil)
		c.showBindingForm(w, r, s, pg, errStatus(err))
		return
	}
	c.flash(w, r, "Listener port "+f.Get("port")+" bound to "+f.Get("repository")+".")
	http.Redirect(w, r, p("/sidecars/%s/bindings", id), http.StatusSeeOther)
}

func (c *Console) deleteBinding(w http.ResponseWriter, r *http.Request, s *session) {
	id, port, repo := r.PathValue("id"), r.PathValue("port"), r.PathValue("repository")
	err := c.call(r, s, "DELETE", p("/api/v1/sidecars/%s/bindings/%s/%s", id, port, repo), nil, nil)
	back := p("/sidecars/%s/bindings", id)
	c.afterDelete(w, r, s, err, "Binding deleted.", back, back)
}
