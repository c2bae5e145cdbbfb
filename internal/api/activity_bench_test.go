package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/activity/activitytest"
	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// discardStore takes activity and keeps none of it, so that a benchmark sees the API's own work.
type discardStore struct{ Store }

func (discardStore) AddActivity(_ context.Context, recs []activity.Stored) (int, int, error) {
	return len(recs), 0, nil
}

// BenchmarkReceiveActivity measures the activity route's handler on 1,000-record batches, without
// authentication or a store; an op is one record.
func BenchmarkReceiveActivity(b *testing.B) {
	const batch = 1000
	a, err := New(Config{Store: discardStore{}})
	if err != nil {
		b.Fatal(err)
	}
	lines := activitytest.NewChain("sc1", "inst1").Lines(b, batch)
	body := activitytest.Body(b, lines)
	p := &auth.SidecarPrincipal{Sidecar: &gatehouse.Sidecar{ID: "sc1"}, InstanceID: "inst1"}
	ctx := context.WithValue(context.Background(), sidecarKey{}, p)
	b.SetBytes(int64(len(body) / batch))
	b.ReportAllocs()
	b.ResetTimer()
	start := activitytest.CPUTime()
	for done := 0; done < b.N; done += batch {
		body := body
		if n := b.N - done; n < batch {
			body = activitytest.Body(b, lines[:n])
		}
		req := httptest.NewRequestWithContext(ctx, "POST", syncapi.ActivityPath, bytes.NewReader(body))
		w := httptest.NewRecorder()
		a.receiveActivity(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64((activitytest.CPUTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
