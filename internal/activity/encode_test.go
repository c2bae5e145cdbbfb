package activity

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func sampleRecords() []Record {
	t := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
	return []Record{
		{Seq: 1, Type: TypeStatement, Time: t},
		{Seq: 2, Type: TypeStatement, Time: t.Truncate(time.Second), SidecarID: "sc", InstanceID: "i", SessionID: "s", Ref: 7,
			User: "a@example.com", Groups: []string{"g1", "<g2>"}, Repository: "r", RepositoryUser: "ru", ClientAddr: "127.0.0.1:5",
			Application: "psql & co", TLS: true, Outcome: OutcomeSuccess, Reason: "why \"not\"", Statement: "SELECT '\u2028\u2029\x00\x1f\b\f\n\r\t\\'",
			Fingerprint: "fp", Kind: "select", Objects: []string{"public.t"}, Params: []string{"\xff\xfe", "é€😀"}, Decision: DecisionDeny,
			Rule: "p#0", Mode: "monitor", Rows: -3, DurationMS: 1.234, ErrorCode: "42501", BytesIn: 10, BytesOut: 1 << 40,
			End: End{Ref: 1, Rows: 5, DurationMS: 0.25, ErrorCode: "57014", Reason: "not <executed>"}, PrevHash: "abc", Hash: "def"},
		{Seq: 9, Type: TypeSessionEnd, Time: t, End: End{Ref: 3}},
		{Seq: 10, Type: TypeStatement, Time: t, End: End{Rows: -1, DurationMS: 1e-7}},
		{Seq: 3, Type: TypeDropped, Time: t.Add(time.Millisecond), Groups: []string{}, Gaps: []Gap{{InstanceID: "i", From: 1, To: 2, LastHash: "h"},
			{InstanceID: "j", From: 4, To: 9, PrevHash: "p", LastHash: ""}}},
		{Seq: 4, Type: "x", Time: t, DurationMS: 1e-7},
		{Seq: 5, Type: "x", Time: t, DurationMS: 1e21},
		{Seq: 6, Type: "x", Time: t, DurationMS: 123456789.125},
		{Seq: 7, Type: "x", Time: t, DurationMS: math.Copysign(0, -1)},
		{Seq: 8, Type: "x", Time: t, DurationMS: -0.5},
		{Seq: math.MaxUint64, Type: "", Time: time.Time{}},
	}
}

func TestAppendRecordIsMarshal(t *testing.T) {
	for _, r := range sampleRecords() {
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendRecord(nil, &r)
		if !ok || string(got) != string(want) {
			t.Errorf("record %d:\n got %s (%v)\nwant %s", r.Seq, got, ok, want)
		}
	}
	r := Record{Seq: 1, Type: "x", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, ok := appendRecord(nil, &r); ok {
		t.Error("a year json.Marshal refuses was encoded")
	}
}

func FuzzAppendRecord(f *testing.F) {
	f.Add("SELECT 1", "<&>", 1.5, int64(3), int64(1700000000123456789))
	f.Add("\xff\u2028\x00\"\\", "é", 1e-7, int64(-1), int64(0))
	f.Add("", "", 0.0, int64(0), int64(-62135596800000000))
	f.Fuzz(func(t *testing.T, stmt, user string, dur float64, rows, nanos int64) {
		r := Record{Seq: 1, Type: TypeStatement, Time: time.Unix(0, nanos).UTC(), Statement: stmt, User: user,
			Objects: []string{user, stmt}, DurationMS: dur, Rows: rows,
			End: End{Ref: uint64(rows), Rows: -rows, DurationMS: -dur, ErrorCode: user, Reason: stmt}}
		want, err := json.Marshal(&r)
		got, ok := appendRecord(nil, &r)
		if err != nil {
			if ok {
				t.Fatalf("json.Marshal: %v, appendRecord gave %s", err, got)
			}
			return
		}
		if !ok || string(got) != string(want) {
			t.Fatalf("\n got %s (%v)\nwant %s", got, ok, want)
		}
	})
}
