package controlplane

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/activity/activitytest"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// post sends body as the sidecar's activity batch and returns the status and answer.
func (s *shipper) post(t *testing.T, body string) (int, string) {
	t.Helper()
	jwt, err := s.signer.Sign()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), "POST", s.srv.URL()+syncapi.ActivityPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestActivityIngest: batches are stored whole or not at all, duplicates (within a batch and of
// stored records) are counted and ignored, and each record is kept as sent, compacted.
func TestActivityIngest(t *testing.T) {
	backends(t, func(t *testing.T, storeURL string) {
		s := startShipper(t, storeURL)
		ack := func(t *testing.T, body string, stored, dups int) {
			t.Helper()
			status, answer := s.post(t, body)
			var got syncapi.ActivityAck
			if status != http.StatusOK || json.Unmarshal([]byte(answer), &got) != nil {
				t.Fatalf("POST activity = %d %s, want 200", status, answer)
			}
			if want := (syncapi.ActivityAck{Stored: stored, Duplicates: dups}); got != want {
				t.Errorf("ack %+v, want %+v", got, want)
			}
		}
		lines := s.chain.Lines(t, 300)

		// A bad record in the middle of a batch: nothing of the batch is stored.
		bad := append([]json.RawMessage(nil), lines[:150]...)
		bad = append(bad, json.RawMessage(`{"seq":151,"type":"statement","sidecar_id":"someone-else","instance_id":"inst1"}`))
		bad = append(bad, lines[151:]...)
		if status, answer := s.post(t, string(activitytest.Body(t, bad))); status != http.StatusBadRequest || !strings.Contains(answer, "records[150].sidecar_id") {
			t.Errorf("batch with another sidecar's record = %d %s, want 400 on records[150].sidecar_id", status, answer)
		}
		if status, answer := s.post(t, string(activitytest.Body(t, lines[:150]))[:5000]+`"]}`); status != http.StatusBadRequest {
			t.Errorf("cut batch = %d %s, want 400", status, answer)
		}
		if got, err := s.srv.store.ListActivity(t.Context(), activity.Filter{Chain: true}); err != nil || len(got) != 0 {
			t.Fatalf("after refused batches the store has %d records (%v), want none", len(got), err)
		}

		// Stored records, sent again among new ones and repeated within the batch, across the
		// store's groups of rows.
		ack(t, string(activitytest.Body(t, lines[95:105])), 10, 0)
		again := append([]json.RawMessage(nil), lines[:200]...)
		again = append(again, lines[3], lines[101], lines[199])
		ack(t, string(activitytest.Body(t, again)), 190, 13)

		// Records as a sidecar might format them (indented, spaced) are stored compacted, and
		// canonical ones byte for byte.
		var indented bytes.Buffer
		if err := json.Indent(&indented, lines[200], "", "  "); err != nil {
			t.Fatal(err)
		}
		spaced := "{\"records\": [\n" + indented.String() + ",\n" + string(lines[201]) + " ]}"
		ack(t, spaced, 2, 0)
		ack(t, string(activitytest.Body(t, lines[200:])), 98, 2)

		got, err := s.srv.store.ListActivity(t.Context(), activity.Filter{Chain: true})
		if err != nil {
			t.Fatal(err)
		}
		var raws []string
		for _, r := range got {
			raws = append(raws, string(r.Raw))
		}
		var want []string
		for _, l := range lines {
			want = append(want, string(l))
		}
		if diff := cmp.Diff(want, raws); diff != "" {
			t.Errorf("stored records (-want +got):\n%s", diff)
		}
		var verify struct {
			Records int
			OK      bool
		}
		admin, err := s.srv.NewSession(t.Context(), "admin")
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), "POST", s.srv.URL()+"/api/v1/activity/verify", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&verify); err != nil || !verify.OK || verify.Records != len(lines) {
			t.Errorf("verify: %+v (%v), want %d records, ok", verify, err, len(lines))
		}

		// The trail shows each statement with the outcome the next record carried, and not the
		// carried outcome on the record that carried it.
		req, _ = http.NewRequestWithContext(t.Context(), "GET", s.srv.URL()+"/api/v1/activity?limit=5", nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp2.Body.Close()
		body, _ := io.ReadAll(resp2.Body)
		var page struct{ Records []map[string]any }
		if err := json.Unmarshal(body, &page); err != nil || len(page.Records) != 5 {
			t.Fatalf("GET activity: %v, %s", err, body)
		}
		for _, r := range page.Records {
			if r["rows"] != 1.0 || r["duration_ms"] != 0.734 || r["end"] != nil {
				t.Errorf("statement %v as listed: rows %v, duration_ms %v, end %v; want 1, 0.734 and no end", r["seq"], r["rows"], r["duration_ms"], r["end"])
			}
		}
	})
}
