package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/activity/activitytest"
)

// TestDecodeBatch: the one-pass decoding of canonical batches finds what decodeBatch finds, and
// leaves every other body to it.
func TestDecodeBatch(t *testing.T) {
	lines := activitytest.NewChain("sc1", "inst1").Lines(t, 6)
	canonical := activitytest.Body(t, lines)
	spaced := `{"records":[` + string(lines[0]) + `,` + strings.Replace(string(lines[1]), `,"type":`, `, "type" :`, 1) + "]}"
	pretty := func() string {
		var b bytes.Buffer
		_ = json.Indent(&b, canonical, "", "  ")
		return b.String()
	}()
	tests := []struct {
		name      string
		body      string
		canonical bool   // decodeCanonicalBatch takes it
		err       string // from decodeBatch
	}{
		{"canonical", string(canonical), true, ""},
		{"one record", string(activitytest.Body(t, lines[:1])), true, ""},
		{"empty", `{"records":[]}`, true, ""},
		{"null records", `{"records":null}`, false, ""},
		{"record with spaces", spaced, false, ""},
		{"indented", pretty, false, ""},
		{"trailing newline", string(canonical) + "\n", false, ""},
		{"other key case", `{"Records":[` + string(lines[0]) + `]}`, false, ""},
		{"braces and quotes in strings", `{"records":[` + strings.Replace(string(lines[0]), `"kind":`, `"reason":"}{\"]\\\\","kind":`, 1) + `]}`, true, ""},
		{"trailing comma", `{"records":[` + string(lines[0]) + `,]}`, false, "not a JSON object with a records list"},
		{"not JSON in the middle", `{"records":[` + string(lines[0]) + `,{"seq":2,` + string(lines[1]) + `]}`, false, "not a JSON object with a records list"},
		{"wrong type in the middle", `{"records":[` + string(lines[0]) + `,{"seq":"2","type":"statement"},` + string(lines[2]) + `]}`, false, "records[1]: not an activity record"},
		{"wrong sidecar in the middle", `{"records":[` + string(lines[0]) + `,` + strings.Replace(string(lines[1]), `"sc1"`, `"sc2"`, 1) + `,` + string(lines[2]) + `]}`, false, "records[1].sidecar_id"},
		{"no seq in the middle", `{"records":[` + string(lines[0]) + `,{"type":"statement","sidecar_id":"sc1","instance_id":"i"}]}`, false, "records[1]: needs instance_id"},
		{"outcome of a later record", `{"records":[` + string(lines[0]) + `,{"seq":2,"type":"statement","sidecar_id":"sc1","instance_id":"i","end":{"ref":2}}]}`, false, "records[1].end.ref"},
		{"outcome without a ref", `{"records":[{"seq":2,"type":"statement","sidecar_id":"sc1","instance_id":"i","end":{"rows":1}}]}`, false, "records[0].end.ref"},
		{"not an object", `{"records":[1]}`, false, "records[0]: not an activity record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fast, ok := decodeCanonicalBatch([]byte(tc.body), "sc1")
			if ok != tc.canonical {
				t.Errorf("decodeCanonicalBatch took it: %v, want %v", ok, tc.canonical)
			}
			slow, err := decodeBatch([]byte(tc.body), "sc1")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("decodeBatch error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				if diff := cmp.Diff(slow, fast); diff != "" {
					t.Errorf("decodeCanonicalBatch (-decodeBatch +got):\n%s", diff)
				}
			}
			for i := range slow {
				var want bytes.Buffer
				var raw json.RawMessage
				var batch struct{ Records []json.RawMessage }
				_ = json.Unmarshal([]byte(tc.body), &batch)
				raw = batch.Records[i]
				_ = json.Compact(&want, raw)
				if !bytes.Equal(slow[i].Raw, want.Bytes()) {
					t.Errorf("record %d kept as %s, want %s", i, slow[i].Raw, want.Bytes())
				}
			}
		})
	}
}

// FuzzDecodeBatch: whatever decodeCanonicalBatch accepts, decodeBatch accepts with the same
// records, so the fast path changes nothing the API answers or stores.
func FuzzDecodeBatch(f *testing.F) {
	lines := activitytest.NewChain("sc1", "inst1").Lines(f, 3)
	f.Add(activitytest.Body(f, lines))
	f.Add(activitytest.Body(f, lines[:1]))
	f.Add([]byte(`{"records":[]}`))
	f.Add([]byte(`{"records":[{"seq":1,"type":"x","sidecar_id":"sc1","instance_id":"i","reason":"}\"{"}]}`))
	f.Add([]byte(`{"records":[{"seq":1,"type":"x","sidecar_id":"sc1","instance_id":"i"},{"seq":2}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := decodeCanonicalBatch(body, "sc1")
		slow, err := decodeBatch(body, "sc1")
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("decodeCanonicalBatch took a batch decodeBatch refuses: %v", err)
		}
		if diff := cmp.Diff(slow, fast); diff != "" {
			t.Fatalf("decodeCanonicalBatch (-decodeBatch +got):\n%s", diff)
		}
	})
}

// FuzzDecodeRecord: what decodeRecord accepts, json.Unmarshal accepts and decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	for _, l := range activitytest.NewChain("sc1", "inst1").Lines(f, 2) {
		f.Add([]byte(l))
	}
	f.Add([]byte(`{"seq":1,"type":"session.start","time":"2026-11-23T09:00:00.5+01:00","groups":["eng","a\u003cb"],"tls":true,"outcome":"success","reason":"caf\u00e9 \"x\""}`))
	f.Add([]byte(`{"seq":2,"type":"session.end","time":"2026-11-23T09:00:00Z","duration_ms":1.5e-7,"bytes_in":-3,"bytes_out":0,"params":[],"objects":[""]}`))
	f.Add([]byte(`{"seq":3,"type":"statement","time":"2026-11-23T09:00:00Z","statement":"bad \xff","seq":4}`))
	f.Add([]byte(`{"seq":01,"type":"x"}`))
	f.Add([]byte(`{"seq":3,"type":"x","end":{"ref":1,"rows":2,"reason":"a\u0026b"},"end":{"ref":2,"duration_ms":0.5}}`))
	f.Add([]byte(`{"seq":3,"type":"x","end":{}}`))
	f.Add([]byte(`{"seq":1,"type":"x","time":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got activity.Record
		if !decodeRecord(b, &got, map[string]string{"sc1": "sc1"}) {
			return
		}
		var want activity.Record
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("decodeRecord took %q, which json.Unmarshal refuses: %v", b, err)
		}
		if diff := cmp.Diff(want, got); diff != "" || want.Time.String() != got.Time.String() {
			t.Fatalf("decodeRecord(%q) (-json.Unmarshal +got):\n%s", b, diff)
		}
	})
}

// TestDecodeRecord: records the spool writes take the fast path; others are left to
// json.Unmarshal.
func TestDecodeRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want bool
	}{
		{"statement", string(activitytest.NewChain("sc1", "i").Lines(t, 1)[0]), true},
		{"statement carrying an outcome", string(activitytest.NewChain("sc1", "i").Lines(t, 2)[1]), true},
		{"outcome with every field", `{"seq":2,"type":"session.end","end":{"ref":1,"rows":-2,"duration_ms":1e-7,"error_code":"57014","reason":"not executed"}}`, true},
		{"outcome twice", `{"seq":3,"type":"x","end":{"ref":1,"rows":2},"end":{"ref":2}}`, true},
		{"outcome null", `{"seq":3,"type":"x","end":null}`, false},
		{"outcome with an unknown key", `{"seq":3,"type":"x","end":{"ref":1,"time":"x"}}`, false},
		{"escapes", `{"seq":1,"type":"x","statement":"select \"a\" \u003c 1\n"}`, true},
		{"empty lists", `{"seq":1,"type":"x","objects":[],"groups":["g"]}`, true},
		{"numbers", `{"seq":18446744073709551615,"type":"x","rows":-1,"duration_ms":0.001}`, true},
		{"seq too large", `{"seq":18446744073709551616,"type":"x"}`, false},
		{"null", `{"seq":1,"type":null}`, false},
		{"unknown key", `{"seq":1,"type":"x","extra":1}`, false},
		{"key in another case", `{"Seq":1,"type":"x"}`, false},
		{"gaps", `{"seq":1,"type":"spool.dropped","gaps":[]}`, false},
		{"space", `{"seq":1, "type":"x"}`, false},
		{"trailing", `{"seq":1,"type":"x"}x`, false},
		{"float seq", `{"seq":1.0,"type":"x"}`, false},
		{"leading zero", `{"seq":1,"type":"x","rows":01}`, false},
		{"bad time", `{"seq":1,"type":"x","time":"yesterday"}`, false},
		{"control character", "{\"seq\":1,\"type\":\"a\tb\"}", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got activity.Record
			ok := decodeRecord([]byte(tc.raw), &got, nil)
			if ok != tc.want {
				t.Fatalf("decodeRecord took it: %v, want %v", ok, tc.want)
			}
			if !ok {
				return
			}
			var want activity.Record
			if err := json.Unmarshal([]byte(tc.raw), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-json.Unmarshal +decodeRecord):\n%s", diff)
			}
		})
	}
}
