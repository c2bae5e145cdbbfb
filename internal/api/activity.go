package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// Activity retention: records older than the "activity_retention" setting (a duration like 90d or
// 720h) are purged; DefaultActivityRetention when unset.
const (
	DefaultActivityRetention = 90 * 24 * time.Hour
	settingActivityRetention = "activity_retention"
	defaultActivityPageSize  = 100
	maxActivityPageSize      = 10000
)

// registerActivityRoutes adds the access policy routes, the activity trail routes and the sidecars'
// activity batch route.
func (a *API) registerActivityRoutes(mux *http.ServeMux) {
	for _, rt := range a.accessPolicyRoutes() {
		a.handle(mux, rt)
	}
	s := &sidecarSync{
		a:        a,
		verifier: &auth.SidecarVerifier{Store: a.store, Audiences: []string{a.publicURL}, Now: func() time.Time { return a.now() }},
	}
	a.handle(mux, route{
		Method: "POST", Path: syncapi.ActivityPath, Access: sidecarAuth,
		Summary: "Sidecars: deliver a batch of activity records in spool order; 2xx only once all are stored (duplicates ignored)",
		Request: syncapi.ActivityBatch{}, Response: syncapi.ActivityAck{}, Status: 200, handle: s.sidecarOnly(a.receiveActivity),
	})
	a.handle(mux, route{
		Method: "GET", Path: "/api/v1/activity", Access: adminOnly,
		Summary: "The activity trail: session starts, statements (with their outcome) and session ends, oldest first",
		Query: map[string]string{
			"since":           "only records at or after this time (RFC 3339) or this long ago (like 10m, 24h, 7d)",
			"until":           "only records before this time (RFC 3339) or this long ago",
			"user":            "only this IdP user's records",
			"repository":      "only this repository's records",
			"repository_user": "only this repository user's records",
			"type":            "session.start, statement, statement.end, session.end or spool.dropped",
			"kind":            "statement kind: select, insert, update, delete, ddl, ...",
			"decision":        "allow or deny",
			"object":          "only statements touching this object (schema.table or schema.table.column, a prefix)",
			"q":               "only statements whose text contains this (case-insensitive)",
			"instance":        "only this sidecar instance's records",
			"limit":           "records per page (default 100, at most 10000)",
			"cursor":          "next_cursor of the previous page",
			"format":          "jsonl: one record per line (JSON Lines), every page at once; otherwise a JSON page",
		},
		Response: activityPage{}, Status: 200, handle: a.listActivity,
	})
	a.handle(mux, route{
		Method: "POST", Path: "/api/v1/activity/verify", Access: adminOnly,
		Summary: "Check the hash chains of the activity records in a range: edited, missing or reordered records are reported",
		Request: verifyRequest{}, Response: verifyResult{}, Status: 200, handle: a.verifyActivity,
	})
}

// receiveActivity stores a sidecar's batch. Records are kept exactly as sent.
func (a *API) receiveActivity(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, syncapi.MaxActivityBody))
	if err != nil {
		a.fail(w, r, gatehouse.Invalid("", "the activity batch is larger than %d bytes or could not be read", syncapi.MaxActivityBody))
		return
	}
	var batch syncapi.ActivityBatch
	if err := json.Unmarshal(body, &batch); err != nil {
		a.fail(w, r, gatehouse.Invalid("records", "the batch is not a JSON object with a records list: %v", err))
		return
	}
	recs := make([]activity.Stored, 0, len(batch.Records))
	for i, raw := range batch.Records {
		var st activity.Stored
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			a.fail(w, r, gatehouse.Invalid("records["+strconv.Itoa(i)+"]", "not a JSON object: %v", err))
			return
		}
		st.Raw = compact.Bytes()
		if err := json.Unmarshal(st.Raw, &st.Record); err != nil {
			a.fail(w, r, gatehouse.Invalid("records["+strconv.Itoa(i)+"]", "not an activity record: %v", err))
			return
		}
		if st.Record.SidecarID != p.Sidecar.ID {
			a.fail(w, r, gatehouse.Invalid("records["+strconv.Itoa(i)+"].sidecar_id", "must be the sidecar ID the request is signed for"))
			return
		}
		if st.Record.InstanceID == "" || st.Record.Seq == 0 || st.Record.Type == "" {
			a.fail(w, r, gatehouse.Invalid("records["+strconv.Itoa(i)+"]", "needs instance_id, seq and type"))
			return
		}
		recs = append(recs, st)
	}
	stored, dups, err := a.store.AddActivity(r.Context(), recs)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, syncapi.ActivityAck{Stored: stored, Duplicates: dups})
}

type activityPage struct {
	Records    []activity.Record `json:"records"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// parseWhen reads an RFC 3339 time or a duration ago ("10m", "7d").
func parseWhen(field, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := parseTTL(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, gatehouse.Invalid(field, "must be an RFC 3339 time or a duration like 10m or 7d, not %q", v)
}

func (a *API) activityFilter(r *http.Request) (activity.Filter, error) {
	q := r.URL.Query()
	now := a.now()
	var f activity.Filter
	var err error
	if f.Since, err = parseWhen("since", q.Get("since"), now); err != nil {
		return f, err
	}
	if f.Until, err = parseWhen("until", q.Get("until"), now); err != nil {
		return f, err
	}
	f.User, f.Repository, f.RepositoryUser = q.Get("user"), q.Get("repository"), q.Get("repository_user")
	f.Type, f.Kind, f.Decision, f.Object, f.Text = q.Get("type"), q.Get("kind"), q.Get("decision"), q.Get("object"), q.Get("q")
	f.InstanceID = q.Get("instance")
	f.Limit = defaultActivityPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxActivityPageSize {
			return f, gatehouse.Invalid("limit", "must be a number from 1 to %d", maxActivityPageSize)
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		var c activity.Cursor
		if err != nil || json.Unmarshal(b, &c) != nil {
			return f, gatehouse.Invalid("cursor", "is not a cursor this API gave out")
		}
		f.After = &c
	}
	return f, nil
}

// view is a record as the trail shows it: a statement with the outcome its statement.end gave.
func view(s *activity.Stored) activity.Record {
	r := s.Record
	if e := s.End; e != nil {
		r.Rows, r.DurationMS, r.ErrorCode = e.Rows, e.DurationMS, e.ErrorCode
		if r.Reason == "" {
			r.Reason = e.Reason
		}
	}
	return r
}

func cursorOf(r *activity.Record) string {
	b, _ := json.Marshal(activity.Cursor{Time: r.Time, InstanceID: r.InstanceID, Seq: r.Seq})
	return base64.RawURLEncoding.EncodeToString(b)
}

func (a *API) listActivity(w http.ResponseWriter, r *http.Request) {
	f, err := a.activityFilter(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ctx := r.Context()
	if r.URL.Query().Get("format") == "jsonl" {
		if r.URL.Query().Get("limit") == "" {
			f.Limit = maxActivityPageSize
		}
		w.Header().Set("Content-Type", "application/jsonl")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		for {
			page, err := a.store.ListActivity(ctx, f)
			if err != nil {
				a.logger.ErrorContext(ctx, "activity export failed", "err", err)
				return
			}
			for i := range page {
				v := view(&page[i])
				if err := enc.Encode(&v); err != nil {
					return
				}
			}
			if len(page) < f.Limit {
				return
			}
			last := page[len(page)-1].Record
			f.After = &activity.Cursor{Time: last.Time, InstanceID: last.InstanceID, Seq: last.Seq}
		}
	}
	page, err := a.store.ListActivity(ctx, f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := activityPage{Records: make([]activity.Record, len(page))}
	for i := range page {
		out.Records[i] = view(&page[i])
	}
	if len(page) == f.Limit {
		out.NextCursor = cursorOf(&page[len(page)-1].Record)
	}
	writeJSON(w, http.StatusOK, out)
}

type verifyRequest struct {
	Since      string `json:"since,omitempty"` // RFC 3339 or a duration ago
	Until      string `json:"until,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
}

type verifyResult struct {
	Records   int                `json:"records"`
	Instances int                `json:"instances"`
	OK        bool               `json:"ok"`
	Problems  []activity.Problem `json:"problems"`
	// Admitted are the records a full spool dropped (drop-oldest) that spool.dropped records
	// account for: lost, but not tampering, so they do not make OK false.
	Admitted []activity.AdmittedGap `json:"admitted"`
}

func (a *API) verifyActivity(w http.ResponseWriter, r *http.Request) {
	var in verifyRequest
	body, err := readBody(w, r)
	if err == nil && len(bytes.TrimSpace(body)) > 0 {
		_, err = decodeBytes(body, &in)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.now()
	f := activity.Filter{Chain: true, InstanceID: in.InstanceID}
	if f.Since, err = parseWhen("since", in.Since, now); err == nil {
		f.Until, err = parseWhen("until", in.Until, now)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	recs, err := a.store.ListActivity(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := verifyResult{Records: len(recs), Problems: []activity.Problem{}, Admitted: []activity.AdmittedGap{}}
	list := make([]activity.Record, len(recs))
	seen := map[string]bool{}
	for i := range recs {
		if err := json.Unmarshal(recs[i].Raw, &list[i]); err != nil {
			// Not even JSON any more: keep its key so the chain reports it, and say why.
			list[i] = recs[i].Record
			list[i].Hash = "unreadable"
		}
		seen[list[i].InstanceID] = true
	}
	out.Instances = len(seen)
	problems, admitted := activity.Check(list)
	out.Problems = append(out.Problems, problems...)
	out.Admitted = append(out.Admitted, admitted...)
	out.OK = len(out.Problems) == 0
	writeJSON(w, http.StatusOK, out)
}

// RunRetention purges activity older than the retention setting every interval until ctx is done.
func (a *API) RunRetention(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := a.purgeActivity(ctx); err != nil && !errors.Is(err, context.Canceled) {
			a.logger.Error("activity retention purge failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *API) purgeActivity(ctx context.Context) error {
	keep := DefaultActivityRetention
	v, err := a.store.Setting(ctx, settingActivityRetention)
	if err != nil {
		return err
	}
	if v != "" {
		d, err := parseTTL(v)
		if err != nil || d <= 0 {
			a.logger.Warn("activity_retention setting is not a duration; using the default", "value", v)
		} else {
			keep = d
		}
	}
	n, err := a.store.PurgeActivity(ctx, a.now().Add(-keep))
	if err == nil && n > 0 {
		a.logger.Info("activity past its retention purged", "records", n, "retention", keep.String())
	}
	return err
}
