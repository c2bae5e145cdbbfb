package web

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// ttlOptions are the expiry picker's choices; the API caps them at the maximum an admin set.
var ttlOptions = []option{
	{Value: "15m", Label: "15 minutes"},
	{Value: "30m", Label: "30 minutes"},
	{Value: "1h", Label: "1 hour"},
	{Value: "4h", Label: "4 hours"},
	{Value: "8h", Label: "8 hours"},
	{Value: "24h", Label: "24 hours"},
	{Value: "7d", Label: "7 days"},
	{Value: "custom", Label: "Custom…"},
}

type tokensData struct {
	Tokens []tokenRow
	Now    time.Time
}

type tokenRow struct {
	gatehouse.AccessToken
	Status string
}

func (c *Console) tokens(w http.ResponseWriter, r *http.Request, s *session) {
	var list []gatehouse.AccessToken
	q := "/api/v1/tokens"
	if s.user.Role == gatehouse.RoleAdmin {
		q += "?owner=" + url.QueryEscape(s.user.Name) // "My tokens", also for admins
	}
	if err := c.call(r, s, "GET", q, nil, &list); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	now := time.Now()
	d := tokensData{Now: now}
	for _, t := range list {
		st := "active"
		switch {
		case t.RevokedAt != nil:
			st = "revoked"
		case !now.Before(t.ExpiresAt):
			st = "expired"
		}
		d.Tokens = append(d.Tokens, tokenRow{AccessToken: t, Status: st})
	}
	slices.SortStableFunc(d.Tokens, func(a, b tokenRow) int { return cmp.Compare(b.CreatedAt.UnixNano(), a.CreatedAt.UnixNano()) })
	pg := c.newPage(w, r, s, "My tokens", "tokens")
	pg.Data = d
	c.render(w, r, http.StatusOK, "tokens", pg)
}

var tokenFields = []string{"ttl", "name"}

type tokenFormData struct {
	TTLs    []option
	Created *createdToken // set once, on the answer to "Generate Token"
}

type createdToken struct {
	gatehouse.AccessToken
	Token string `json:"token"`
}

func (c *Console) tokenForm(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "New Access Token", "tokens")
	pg.Form.Set("ttl", "1h")
	pg.Data = tokenFormData{TTLs: ttlOptions}
	c.render(w, r, http.StatusOK, "token_form", pg)
}

func (c *Console) createToken(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	ttl := f.Get("ttl")
	if ttl == "custom" {
		ttl = f.Get("ttl_custom")
	}
	in := map[string]any{"ttl": ttl}
	setIf(in, "name", f.Get("name"))
	pg := c.newPage(w, r, s, "New Access Token", "tokens")
	pg.Form = f
	var out createdToken
	if err := c.call(r, s, "POST", "/api/v1/tokens", in, &out); err != nil {
		pg.setError(err, tokenFields, map[string]string{"ttl": ttlField(f)})
		pg.Data = tokenFormData{TTLs: ttlOptions}
		c.render(w, r, errStatus(err), "token_form", pg)
		return
	}
	// The secret is in this answer only: no redirect, no cache, never stored by the console.
	pg.Data = tokenFormData{TTLs: ttlOptions, Created: &out}
	c.render(w, r, http.StatusCreated, "token_form", pg)
}

func ttlField(f url.Values) string {
	if f.Get("ttl") == "custom" {
		return "ttl_custom"
	}
	return "ttl"
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	err := c.call(r, s, "DELETE", p("/api/v1/tokens/%s", id), nil, nil)
	c.afterDelete(w, r, s, err, "Token revoked.", "/tokens", "/tokens")
}

// ---- connections

type connectionsData struct {
	Repositories []repoConnections
}

type repoConnections struct {
	Name     string
	Type     gatehouse.DatabaseType
	Database string
	Users    []connection
}

type connection struct {
	gatehouse.Connection
	Client, ClientLabel, JDBC string
}

func (c *Console) connections(w http.ResponseWriter, r *http.Request, s *session) {
	var list []gatehouse.Connection
	if err := c.call(r, s, "GET", "/api/v1/connections", nil, &list); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	slices.SortStableFunc(list, func(a, b gatehouse.Connection) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.RepositoryUser, b.RepositoryUser))
	})
	var d connectionsData
	for _, cn := range list {
		if n := len(d.Repositories); n == 0 || d.Repositories[n-1].Name != cn.Repository {
			d.Repositories = append(d.Repositories, repoConnections{Name: cn.Repository, Type: cn.Type, Database: cn.Database})
		}
		rc := &d.Repositories[len(d.Repositories)-1]
		label, client, jdbc := connectionStrings(cn)
		rc.Users = append(rc.Users, connection{Connection: cn, Client: client, ClientLabel: label, JDBC: jdbc})
	}
	pg := c.newPage(w, r, s, "Connections", "connections")
	pg.Data = d
	c.render(w, r, http.StatusOK, "connections", pg)
}

// connectionStrings returns the native client's name and command line, and a JDBC URL, for cn.
// None holds the token: the client asks for it as the password.
func connectionStrings(cn gatehouse.Connection) (label, client, jdbc string) {
	host, port, user, db := cn.SidecarHost, strconv.Itoa(cn.Port), cn.Username, cn.Database
	switch cn.Type {
	case gatehouse.PostgreSQL:
		if db == "" {
			db = "postgres"
		}
		return "psql", fmt.Sprintf(`psql "host=%s port=%s dbname=%s user=%s sslmode=require"`, host, port, db, user),
			fmt.Sprintf("jdbc:postgresql://%s:%s/%s?sslmode=require&user=%s", host, port, url.PathEscape(db), url.QueryEscape(user))
	case gatehouse.MySQL:
		cmd := fmt.Sprintf("mysql --host=%s --port=%s --user=%s --password --ssl-mode=REQUIRED", host, port, user)
		if db != "" {
			cmd += " " + db
		}
		return "mysql", cmd, fmt.Sprintf("jdbc:mysql://%s:%s/%s?sslMode=REQUIRED&user=%s", host, port, url.PathEscape(db), url.QueryEscape(user))
	case gatehouse.SQLServer:
		cmd := fmt.Sprintf("sqlcmd -S tcp:%s,%s -U %s -N", host, port, user)
		if db != "" {
			cmd += " -d " + db
		}
		return "sqlcmd", cmd, fmt.Sprintf("jdbc:sqlserver://%s:%s;databaseName=%s;encrypt=true;user=%s", host, port, db, user)
	case gatehouse.Oracle:
		return "sqlplus", fmt.Sprintf("sqlplus %s@tcps://%s:%s/%s", user, host, port, db),
			fmt.Sprintf("jdbc:oracle:thin:@tcps://%s:%s/%s", host, port, db)
	}
	return "client", "", ""
}
