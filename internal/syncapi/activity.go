package syncapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// ActivityPath receives batches of activity records from a sidecar instance.
const ActivityPath = "/api/v1/sidecar/activity"

// MaxActivityBody bounds an activity batch's request body.
const MaxActivityBody = 64 << 20

// ActivityBatch is what a sidecar sends: records of its spool (package activity's Record, in its
// canonical JSON), in spool order. The control plane answers 2xx only after it has stored every one
// of them, byte for byte, so that their hash chain still verifies; a record it already has (same
// instance and seq) is ignored. Records must carry the calling sidecar's ID and instance ID.
type ActivityBatch struct {
	Records []json.RawMessage `json:"records"`
}

// ActivityAck is the control plane's answer to a batch.
type ActivityAck struct {
	Stored     int `json:"stored"`     // records new to the control plane
	Duplicates int `json:"duplicates"` // records it had already
}

// ShipActivity sends a batch of activity records, each already encoded as one JSON object (a line
// of the spool), in the body ActivityBody builds.
func (c *Client) ShipActivity(ctx context.Context, records []json.RawMessage) error {
	body, err := ActivityBody(records)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, ActivityPath, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(resp)
	}
	return nil
}

// ActivityBody is an ActivityBatch of records built from the records' bytes as they are: they are
// not decoded, checked or re-encoded (json.Marshal of a RawMessage would re-scan each).
func ActivityBody(records []json.RawMessage) ([]byte, error) {
	n := len(`{"records":[]}`)
	for _, r := range records {
		if len(r) == 0 {
			return nil, fmt.Errorf("encode activity batch: empty record")
		}
		n += len(r) + 1
	}
	body := make([]byte, 0, n)
	body = append(body, `{"records":[`...)
	for i, r := range records {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, r...)
	}
	return append(body, "]}"...), nil
}
