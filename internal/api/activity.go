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
	"unicode/utf8"

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

// receiveActivity stores a sidecar's batch. Records are kept exactly as sent, compacted.
func (a *API) receiveActivity(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	body, err := readActivityBody(w, r)
	if err != nil {
		a.fail(w, r, gatehouse.Invalid("", "the activity batch is larger than %d bytes or could not be read", syncapi.MaxActivityBody))
		return
	}
	recs, ok := decodeCanonicalBatch(body, p.Sidecar.ID)
	if !ok {
		if recs, err = decodeBatch(body, p.Sidecar.ID); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	stored, dups, err := a.store.AddActivity(r.Context(), recs)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, syncapi.ActivityAck{Stored: stored, Duplicates: dups})
}

// readActivityBody reads the request body into a buffer of its announced length, so that a batch
// of megabytes is not copied over and over as io.ReadAll grows its buffer. The first allocation is
// at most a sidecar's largest batch: an announced length is only a promise.
func readActivityBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, syncapi.MaxActivityBody)
	if n := r.ContentLength; n > 0 && n <= syncapi.MaxActivityBody {
		n = min(n, activity.DefaultMaxBatchBytes+64<<10)
		buf := bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead)) // ReadFrom grows below MinRead free
		_, err := buf.ReadFrom(body)
		return buf.Bytes(), err
	}
	return io.ReadAll(body)
}

// decodeBatch decodes any batch the API accepts, and says what is wrong with one it does not.
func decodeBatch(body []byte, sidecarID string) ([]activity.Stored, error) {
	var batch syncapi.ActivityBatch
	if err := json.Unmarshal(body, &batch); err != nil {
		return nil, gatehouse.Invalid("records", "the batch is not a JSON object with a records list: %v", err)
	}
	recs := make([]activity.Stored, len(batch.Records))
	for i, raw := range batch.Records {
		st := &recs[i]
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			return nil, gatehouse.Invalid("records["+strconv.Itoa(i)+"]", "not a JSON object: %v", err)
		}
		st.Raw = compact.Bytes()
		if err := json.Unmarshal(st.Raw, &st.Record); err != nil {
			return nil, gatehouse.Invalid("records["+strconv.Itoa(i)+"]", "not an activity record: %v", err)
		}
		if err := checkRecord(i, &st.Record, sidecarID); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

func checkRecord(i int, r *activity.Record, sidecarID string) error {
	if r.SidecarID != sidecarID {
		return gatehouse.Invalid("records["+strconv.Itoa(i)+"].sidecar_id", "must be the sidecar ID the request is signed for")
	}
	if r.InstanceID == "" || r.Seq == 0 || r.Type == "" {
		return gatehouse.Invalid("records["+strconv.Itoa(i)+"]", "needs instance_id, seq and type")
	}
	if r.End != (activity.End{}) && (r.End.Ref == 0 || r.End.Ref >= r.Seq) {
		return gatehouse.Invalid("records["+strconv.Itoa(i)+"].end.ref", "must be the seq of an earlier record of the instance")
	}
	return nil
}

// decodeCanonicalBatch decodes a batch as syncapi.Client.ShipActivity sends it — exactly
// {"records":[...]} with compact JSON objects, no whitespace — without decoding the body as a
// whole, nor copying or compacting the records: their Raw are slices of body. It reports false
// for any other body and for any batch with a record to refuse; decodeBatch then decodes it, or
// says why not, as before. Each record is decoded into its Record by decodeRecord or
// json.Unmarshal, which take only valid JSON, so a body accepted here is valid JSON and
// decodeBatch would find the same records in it (FuzzDecodeBatch).
func decodeCanonicalBatch(body []byte, sidecarID string) ([]activity.Stored, bool) {
	const prefix, suffix = `{"records":[`, `]}`
	if len(body) < len(prefix)+len(suffix) || string(body[:len(prefix)]) != prefix || string(body[len(body)-len(suffix):]) != suffix {
		return nil, false
	}
	list := body[len(prefix) : len(body)-len(suffix)]
	recs := make([]activity.Stored, 0, bytes.Count(list, []byte(`{"seq":`)))
	names := map[string]string{}
	for len(list) > 0 {
		n := objectEnd(list)
		if n < 0 {
			return nil, false
		}
		raw := list[:n:n]
		list = list[n:]
		if len(list) > 0 {
			if list[0] != ',' || len(list) == 1 {
				return nil, false
			}
			list = list[1:]
		}
		recs = append(recs, activity.Stored{Raw: raw})
		st := &recs[len(recs)-1]
		if !decodeRecord(raw, &st.Record, names) {
			st.Record = activity.Record{}
			if json.Unmarshal(raw, &st.Record) != nil {
				return nil, false
			}
		}
		if checkRecord(0, &st.Record, sidecarID) != nil {
			return nil, false
		}
	}
	return recs, true
}

// objectEnd returns the length of the JSON object at the start of b, found by matching braces
// outside strings, or -1 if b does not start with one or has whitespace outside strings before its
// end. It does not validate the object.
func objectEnd(b []byte) int {
	if len(b) == 0 || b[0] != '{' {
		return -1
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
		case ' ', '\t', '\n', '\r':
			return -1
		}
	}
	return -1
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

// view is a record as the trail shows it: a statement with its outcome, from its statement.end
// record or the later record that carried it. The outcome a record carries for an earlier
// statement is shown on that statement, not on the carrier.
func view(s *activity.Stored) activity.Record {
	r := s.Record
	r.End = activity.End{}
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

// decodeRecord decodes a record as the spool writes it (a compact JSON object of Record's own
// keys, no nulls, no gaps) into r, which must be zero, and reports whether it could. What it
// accepts, json.Unmarshal accepts too and decodes the same (FuzzDecodeRecord): it exists because
// json.Unmarshal, which scans a record twice and decodes by reflection, was most of the API's cost
// per record. For anything else it reports false, r then half-filled, and the caller uses
// json.Unmarshal. It belongs next to the encoder in package activity.
func decodeRecord(b []byte, r *activity.Record, names map[string]string) bool {
	d := recordDecoder{b: b, names: names}
	return d.object(func(key []byte) (ok bool) {
		switch string(key) {
		case "seq":
			r.Seq, ok = d.uint()
		case "type":
			r.Type, ok = d.str()
		case "time":
			var tok []byte
			tok, _, ok = d.strToken()
			ok = ok && r.Time.UnmarshalJSON(tok) == nil
		case "sidecar_id":
			r.SidecarID, ok = d.str()
		case "instance_id":
			r.InstanceID, ok = d.str()
		case "session_id":
			r.SessionID, ok = d.str()
		case "ref":
			r.Ref, ok = d.uint()
		case "user":
			r.User, ok = d.str()
		case "groups":
			r.Groups, ok = d.strs()
		case "repository":
			r.Repository, ok = d.str()
		case "repository_user":
			r.RepositoryUser, ok = d.str()
		case "client_addr":
			r.ClientAddr, ok = d.str()
		case "application":
			r.Application, ok = d.str()
		case "tls":
			r.TLS, ok = d.bool()
		case "outcome":
			r.Outcome, ok = d.str()
		case "reason":
			r.Reason, ok = d.str()
		case "statement":
			r.Statement, ok = d.str()
		case "fingerprint":
			r.Fingerprint, ok = d.str()
		case "kind":
			r.Kind, ok = d.str()
		case "objects":
			r.Objects, ok = d.strs()
		case "params":
			r.Params, ok = d.strs()
		case "decision":
			r.Decision, ok = d.str()
		case "rule":
			r.Rule, ok = d.str()
		case "mode":
			r.Mode, ok = d.str()
		case "rows":
			r.Rows, ok = d.int()
		case "duration_ms":
			r.DurationMS, ok = d.float()
		case "error_code":
			r.ErrorCode, ok = d.str()
		case "bytes_in":
			r.BytesIn, ok = d.int()
		case "bytes_out":
			r.BytesOut, ok = d.int()
		case "end":
			ok = d.end(&r.End)
		case "prev_hash":
			r.PrevHash, ok = d.str()
		case "hash":
			r.Hash, ok = d.str()
		default: // gaps, and keys json.Unmarshal matches without case or ignores
			return false
		}
		return ok
	}) && d.i == len(d.b)
}

// recordDecoder reads compact JSON: no whitespace anywhere outside strings.
type recordDecoder struct {
	b []byte
	i int
	// names holds the short strings decoded so far (IDs, user and repository names, kinds,
	// object names), which most records of a batch repeat: one copy of each for the batch instead
	// of an allocation per record. Nil: none kept.
	names map[string]string
}

// maxName is the longest string kept in recordDecoder.names; hashes (64 characters) are longer.
const maxName = 48

func (d *recordDecoder) next(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// key reads "key": where the key has no escapes.
func (d *recordDecoder) key() ([]byte, bool) {
	tok, plain, ok := d.strToken()
	if !ok || !plain || !d.next(':') {
		return nil, false
	}
	return tok[1 : len(tok)-1], true
}

// strToken reads a string and returns it with its quotes; plain says it needs no decoding (no
// escapes, valid UTF-8). It refuses control characters, which JSON does not allow in strings.
func (d *recordDecoder) strToken() (tok []byte, plain, ok bool) {
	if !d.next('"') {
		return nil, false, false
	}
	start, plain, ascii := d.i-1, true, true
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			tok = d.b[start:d.i]
			if !ascii && plain {
				plain = utf8.Valid(tok)
			}
			return tok, plain, true
		case c == '\\':
			plain = false
			d.i++ // the escaped character, checked by json.Unmarshal
		case c < 0x20:
			return nil, false, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false, false
}

func (d *recordDecoder) str() (string, bool) {
	tok, plain, ok := d.strToken()
	if !ok {
		return "", false
	}
	if plain {
		v := tok[1 : len(tok)-1]
		if d.names == nil || len(v) > maxName {
			return string(v), true
		}
		if s, ok := d.names[string(v)]; ok {
			return s, true
		}
		s := string(v)
		d.names[s] = s
		return s, true
	}
	var s string
	return s, json.Unmarshal(tok, &s) == nil
}

func (d *recordDecoder) strs() ([]string, bool) {
	if !d.next('[') {
		return nil, false
	}
	out := []string{}
	if d.next(']') {
		return out, true
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if d.next(']') {
			return out, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
}

// object reads a JSON object, calling field with each key and d at its value; field reports
// whether it read the value.
func (d *recordDecoder) object(field func(key []byte) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	for {
		key, ok := d.key()
		if !ok || !field(key) {
			return false
		}
		if d.next('}') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

// end reads a carried outcome into e as json.Unmarshal does: a key it lacks leaves e's field as
// it was (a second "end" key adds to the first).
func (d *recordDecoder) end(e *activity.End) bool {
	return d.object(func(key []byte) (ok bool) {
		switch string(key) {
		case "ref":
			e.Ref, ok = d.uint()
		case "rows":
			e.Rows, ok = d.int()
		case "duration_ms":
			e.DurationMS, ok = d.float()
		case "error_code":
			e.ErrorCode, ok = d.str()
		case "reason":
			e.Reason, ok = d.str()
		}
		return ok
	})
}

func (d *recordDecoder) bool() (bool, bool) {
	rest := d.b[d.i:]
	switch {
	case bytes.HasPrefix(rest, []byte("true")):
		d.i += 4
		return true, true
	case bytes.HasPrefix(rest, []byte("false")):
		d.i += 5
		return false, true
	}
	return false, false
}

// digits reads JSON's integer part: 0, or digits without a leading zero.
func (d *recordDecoder) digits() bool {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i > start && (d.b[start] != '0' || d.i == start+1)
}

func (d *recordDecoder) uint() (uint64, bool) {
	start := d.i
	if !d.digits() {
		return 0, false
	}
	n, err := strconv.ParseUint(string(d.b[start:d.i]), 10, 64)
	return n, err == nil
}

func (d *recordDecoder) int() (int64, bool) {
	start := d.i
	d.next('-')
	if !d.digits() {
		return 0, false
	}
	n, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	return n, err == nil
}

func (d *recordDecoder) float() (float64, bool) {
	start := d.i
	d.next('-')
	if !d.digits() {
		return 0, false
	}
	if d.next('.') && !d.digits0() {
		return 0, false
	}
	if d.next('e') || d.next('E') {
		if !d.next('+') {
			d.next('-')
		}
		if !d.digits0() {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(d.b[start:d.i]), 64)
	return f, err == nil
}

// digits0 reads one or more digits, leading zeros allowed (a fraction or an exponent).
func (d *recordDecoder) digits0() bool {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}
