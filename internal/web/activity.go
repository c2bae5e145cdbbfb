package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// activityFilters are the Activity page's filters: the API's query parameters of the same names.
var activityFilters = []string{"since", "until", "user", "repository", "repository_user", "type", "kind", "decision", "object", "q"}

// record is one activity record as the API serves it; Raw keeps every field for "full record".
type record struct {
	Seq            uint64    `json:"seq"`
	Type           string    `json:"type"`
	Time           time.Time `json:"time"`
	User           string    `json:"user"`
	Repository     string    `json:"repository"`
	RepositoryUser string    `json:"repository_user"`
	Outcome        string    `json:"outcome"`
	Reason         string    `json:"reason"`
	Statement      string    `json:"statement"`
	Kind           string    `json:"kind"`
	Decision       string    `json:"decision"`
	Rule           string    `json:"rule"`
	Full           string    `json:"-"`
}

type activityData struct {
	Available  bool
	Records    []record
	NextCursor string
	Query      string // the filters, for the next page and export links
	Types      []option
	Decisions  []option
}

var activityFields = activityFilters

func (c *Console) activity(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Activity", "activity")
	q := url.Values{}
	in := r.URL.Query()
	if !in.Has("since") {
		in.Set("since", "24h")
	}
	for _, k := range activityFilters {
		if v := in.Get(k); v != "" {
			q.Set(k, v)
		}
	}
	pg.Form = in
	d := activityData{
		Available: true,
		Query:     q.Encode(),
		Types: []option{{Value: "", Label: "Any"}, {Value: "session.start", Label: "Session start"}, {Value: "statement", Label: "Statement"},
			{Value: "statement.end", Label: "Statement end"}, {Value: "session.end", Label: "Session end"}, {Value: "spool.dropped", Label: "Spool dropped"}},
		Decisions: []option{{Value: "", Label: "Any"}, {Value: "allow", Label: "Allow"}, {Value: "deny", Label: "Deny"}},
	}
	if c := in.Get("cursor"); c != "" {
		q.Set("cursor", c)
	}
	q.Set("limit", "50")
	// An admin-only call first: the API answers a route it lacks with 404 to anyone.
	if err := c.call(r, s, "GET", "/api/v1/settings", nil, nil); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	var page struct {
		Records    []json.RawMessage `json:"records"`
		NextCursor string            `json:"next_cursor"`
	}
	status := http.StatusOK
	err := c.call(r, s, "GET", "/api/v1/activity?"+q.Encode(), nil, &page)
	switch {
	case routeMissing(err):
		d.Available = false
	case apiCode(err) == gatehouse.ECodeInvalid:
		pg.setError(err, activityFields, nil)
		status = http.StatusBadRequest
	case err != nil:
		c.apiFailed(w, r, s, err)
		return
	}
	d.NextCursor = page.NextCursor
	for _, raw := range page.Records {
		var rec record
		if json.Unmarshal(raw, &rec) != nil {
			continue
		}
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, raw, "", "  ") // raw came from json.Unmarshal: it is valid
		rec.Full = pretty.String()
		d.Records = append(d.Records, rec)
	}
	pg.Data = d
	c.render(w, r, status, "activity", pg)
}

// exportActivity downloads the filtered activity as JSON Lines.
func (c *Console) exportActivity(w http.ResponseWriter, r *http.Request, s *session) {
	q := url.Values{}
	for _, k := range activityFilters {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	q.Set("format", "jsonl")
	req, err := http.NewRequestWithContext(r.Context(), "GET", "/api/v1/activity?"+q.Encode(), nil)
	if err != nil {
		c.serverError(w, r, s, err)
		return
	}
	req.Host, req.RemoteAddr = r.Host, r.RemoteAddr
	req.Header.Set("Authorization", "Bearer "+s.token)
	rec := &recorder{header: http.Header{}}
	c.api.ServeHTTP(rec, req)
	if rec.status >= 300 {
		var eb struct {
			Error *gatehouse.Error `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &eb) == nil && eb.Error != nil {
			c.apiFailed(w, r, s, &apiError{Status: rec.status, Code: eb.Error.Code, Field: eb.Error.Field, Message: eb.Error.Message})
			return
		}
		c.errorPage(w, r, s, rec.status, "Export failed", "The activity could not be exported.")
		return
	}
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Content-Disposition", `attachment; filename="gatehouse-activity.jsonl"`)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = rec.body.WriteTo(w) // the browser went away
}
