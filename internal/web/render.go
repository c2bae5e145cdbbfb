package web

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// page is what every template gets.
type page struct {
	Title   string
	Section string // the navigation entry to mark current
	User    *gatehouse.User
	CSRF    string
	Flash   string

	Form    url.Values        // the submitted values, to fill the form again after an error
	Errs    map[string]string // form field -> the API's message for it
	General string            // an API error that names no field of the form

	Data any
}

// Val returns the submitted value of a form field.
func (p *page) Val(name string) string { return p.Form.Get(name) }

// Has reports whether the form field name (a checkbox group) has the value v.
func (p *page) Has(name, v string) bool { return slices.Contains(p.Form[name], v) }

// Err returns the error message for a form field.
func (p *page) Err(name string) string { return p.Errs[name] }

// IsAdmin reports whether the signed-in user is an administrator (for the navigation only: the
// API decides what each page may show).
func (p *page) IsAdmin() bool { return p.User != nil && p.User.Role == gatehouse.RoleAdmin }

// setError places an API error next to the form field it names (fields lists the form's fields;
// rename maps an API field to a form field when they differ) or, failing that, above the form.
func (p *page) setError(err error, fields []string, rename map[string]string) {
	var e *apiError
	if !errors.As(err, &e) {
		p.General = "Something went wrong on the server; its log has the details."
		return
	}
	f := e.Field
	if to, ok := rename[f]; ok {
		f = to
	}
	if f != "" && slices.Contains(fields, f) {
		if p.Errs == nil {
			p.Errs = map[string]string{}
		}
		p.Errs[f] = e.Message
		return
	}
	if e.Field != "" {
		p.General = e.Field + ": " + e.Message
		return
	}
	p.General = e.Message
}

func (c *Console) newPage(w http.ResponseWriter, r *http.Request, s *session, title, section string) *page {
	pg := &page{Title: title, Section: section, Form: url.Values{}, Flash: c.takeFlash(w, r)}
	if s != nil {
		pg.User, pg.CSRF = s.user, s.csrf()
	}
	return pg
}

// render executes a page template and writes it with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, pg *page) {
	t, ok := c.pages[name]
	if !ok {
		c.logger.ErrorContext(r.Context(), "no such template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", pg); err != nil {
		c.logger.ErrorContext(r.Context(), "render page", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w) // the browser went away
}

type errorData struct {
	Status  int
	Heading string
	Message string
}

func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, heading, msg string) {
	pg := c.newPage(w, r, s, heading, "")
	pg.Data = errorData{Status: status, Heading: heading, Message: msg}
	c.render(w, r, status, "error", pg)
}

// apiFailed shows the page for an API error that is not about a form field: 403 for forbidden,
// 404 for not found, the error page otherwise.
func (c *Console) apiFailed(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		c.serverError(w, r, s, err)
		return
	}
	switch e.Code {
	case gatehouse.ECodeForbidden:
		c.errorPage(w, r, s, http.StatusForbidden, "Not allowed", "This page is for administrators. "+e.Message+".")
	case gatehouse.ECodeNotFound:
		c.errorPage(w, r, s, http.StatusNotFound, "Not found", e.Message)
	case gatehouse.ECodeUnauthenticated:
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	default:
		c.errorPage(w, r, s, e.Status, "Request refused", e.Error())
	}
}

func (c *Console) serverError(w http.ResponseWriter, r *http.Request, s *session, err error) {
	c.logger.ErrorContext(r.Context(), "console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	c.errorPage(w, r, s, http.StatusInternalServerError, "Server error", "Something went wrong on the server; its log has the details.")
}

// ---- template helpers

// field is what the "input", "select" and "textarea" templates render.
type field struct {
	Name, Label, Type, Value, Err, Hint, Placeholder string
	Options                                          []option
	Required                                         bool
}

// ID is the element id of the field's control.
func (f field) ID() string { return "f-" + idSafe(f.Name) }

// ErrID is the element id of the field's error message.
func (f field) ErrID() string { return "e-" + idSafe(f.Name) }

// HintID is the element id of the field's hint.
func (f field) HintID() string { return "h-" + idSafe(f.Name) }

type option struct {
	Value, Label string
	Selected     bool
}

func idSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, s)
}

var funcs = template.FuncMap{
	// fld builds a field: fld page name label type hint [placeholder].
	"fld": func(p *page, name, label, typ, hint string, more ...string) field {
		f := field{Name: name, Label: label, Type: typ, Hint: hint, Value: p.Val(name), Err: p.Err(name)}
		if len(more) > 0 {
			f.Placeholder = more[0]
		}
		return f
	},
	// sel builds a select: sel page name label hint options; the submitted value is selected.
	"sel": func(p *page, name, label, hint string, opts []option) field {
		v := p.Val(name)
		out := make([]option, len(opts))
		for i, o := range opts {
			o.Selected = o.Value == v
			out[i] = o
		}
		return field{Name: name, Label: label, Hint: hint, Value: v, Err: p.Err(name), Options: out}
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"whenp": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"typeLabel": typeLabel,
	"sourceLabel": func(s gatehouse.SecretSource) string {
		for _, o := range sourceOptions {
			if o.Value == string(s) {
				return o.Label
			}
		}
		return string(s)
	},
	"join":  strings.Join,
	"list1": func(value, label string) []option { return []option{{Value: value, Label: label}} },
	"prepend": func(value, label string, opts []option) []option {
		return append([]option{{Value: value, Label: label}}, opts...)
	},
	"inc":    func(i int) int { return i + 1 },
	"idsafe": idSafe,
}

var databaseTypeOptions = []option{
	{Value: string(gatehouse.PostgreSQL), Label: "PostgreSQL"},
	{Value: string(gatehouse.MySQL), Label: "MySQL"},
	{Value: string(gatehouse.SQLServer), Label: "Microsoft SQL Server"},
	{Value: string(gatehouse.Oracle), Label: "Oracle"},
}

func typeLabel(t gatehouse.DatabaseType) string {
	for _, o := range databaseTypeOptions {
		if o.Value == string(t) {
			return o.Label
		}
	}
	return string(t)
}

var sourceOptions = []option{
	{Value: string(gatehouse.SourceAWSSecretsManager), Label: "AWS Secrets Manager"},
	{Value: string(gatehouse.SourceAzureKeyVault), Label: "Azure Key Vault"},
	{Value: string(gatehouse.SourceEnv), Label: "Environment variable"},
	{Value: string(gatehouse.SourceFile), Label: "File"},
	{Value: string(gatehouse.SourceAWSRDSIAM), Label: "AWS RDS IAM authentication"},
	{Value: string(gatehouse.SourceAzureEntra), Label: "Microsoft Entra ID (Azure)"},
}

var roleOptions = []option{
	{Value: string(gatehouse.RoleDataConsumer), Label: "Data consumer"},
	{Value: string(gatehouse.RoleAdmin), Label: "Admin"},
}
