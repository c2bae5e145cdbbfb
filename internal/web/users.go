package web

import (
	"net/http"

	"github.com/gatehousedb/gatehouse"
)

type usersData struct {
	Tab    string
	Users  []gatehouse.User
	Groups []gatehouse.Group
	Roles  []option
}

var userFields = []string{"name", "display_name", "email", "role", "password"}

func (c *Console) users(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Users & Groups", "users")
	pg.Form.Set("role", string(gatehouse.RoleDataConsumer))
	c.showUsers(w, r, s, pg, http.StatusOK)
}

func (c *Console) showUsers(w http.ResponseWriter, r *http.Request, s *session, pg *page, status int) {
	d := usersData{Tab: "users", Roles: roleOptions}
	if err := c.call(r, s, "GET", "/api/v1/users", nil, &d.Users); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg.Data = d
	c.render(w, r, status, "users", pg)
}

func (c *Console) createUser(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	in := map[string]any{"name": f.Get("name"), "role": f.Get("role")}
	setIf(in, "display_name", f.Get("display_name"))
	setIf(in, "email", f.Get("email"))
	if v := f.Get("password"); v != "" {
		in["password"] = v
	}
	if err := c.call(r, s, "POST", "/api/v1/users", in, nil); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden {
			c.apiFailed(w, r, s, err)
			return
		}
		pg := c.newPage(w, r, s, "Users & Groups", "users")
		pg.Form = f
		pg.Form.Del("password") // never sent back to the browser
		pg.setError(err, userFields, nil)
		c.showUsers(w, r, s, pg, errStatus(err))
		return
	}
	c.flash(w, r, "User "+f.Get("name")+" added.")
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

func (c *Console) deleteUser(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	err := c.call(r, s, "DELETE", p("/api/v1/users/%s", name), nil, nil)
	c.afterDelete(w, r, s, err, "User "+name+" deleted.", "/users", "/users")
}

var groupFields = []string{"name", "display_name", "role", "members"}

func (c *Console) groups(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Users & Groups", "users")
	c.showGroups(w, r, s, pg, http.StatusOK)
}

func (c *Console) showGroups(w http.ResponseWriter, r *http.Request, s *session, pg *page, status int) {
	d := usersData{Tab: "groups", Roles: append([]option{{Value: "", Label: "No role"}}, roleOptions...)}
	if err := c.call(r, s, "GET", "/api/v1/groups", nil, &d.Groups); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg.Data = d
	c.render(w, r, status, "users", pg)
}

func (c *Console) createGroup(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	in := map[string]any{"name": f.Get("name"), "members": list(f.Get("members"))}
	setIf(in, "display_name", f.Get("display_name"))
	setIf(in, "role", f.Get("role"))
	if err := c.call(r, s, "POST", "/api/v1/groups", in, nil); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden {
			c.apiFailed(w, r, s, err)
			return
		}
		pg := c.newPage(w, r, s, "Users & Groups", "users")
		pg.Form = f
		pg.setError(err, groupFields, nil)
		c.showGroups(w, r, s, pg, errStatus(err))
		return
	}
	c.flash(w, r, "Group "+f.Get("name")+" added.")
	http.Redirect(w, r, "/groups", http.StatusSeeOther)
}

func (c *Console) deleteGroup(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	err := c.call(r, s, "DELETE", p("/api/v1/groups/%s", name), nil, nil)
	c.afterDelete(w, r, s, err, "Group "+name+" deleted.", "/groups", "/groups")
}
