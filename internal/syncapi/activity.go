package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
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
// of the spool), in the body ActivityBody builds. The body is built in a buffer the client reuses
// from batch to batch (under load a batch is megabytes, several times a second).
func (c *Client) ShipActivity(ctx context.Context, records []json.RawMessage) error {
	c.shipMu.Lock()
	defer c.shipMu.Unlock()
	body, err := AppendActivityBody(c.shipBuf[:0], records)
	if err != nil {
		return err
	}
	rb := &reusedBody{b: body}
	defer func() {
		rb.release()
		c.keepShipBuffer(body)
	}()
	req, err := c.newRequest(ctx, http.MethodPost, ActivityPath, rb.reader())
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return rb.reader(), nil } // for the transport's retries
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(resp)
	}
	return nil
}

// shipBufferIdle is how long the buffer of the last batch is kept when no other batch follows.
const shipBufferIdle = 2 * time.Second

// keepShipBuffer keeps b, emptied, for the next batch: not when it is much larger than this batch
// needed, and only until no batch has followed for shipBufferIdle. So a sidecar whose load has
// passed, or that shipped the logins of a thousand sessions and went quiet, does not hold the
// buffer of its busiest moment. Called with c.shipMu held.
func (c *Client) keepShipBuffer(b []byte) {
	c.shipBuf = b[:0]
	if cap(b) > 64<<10 && cap(b) > 4*len(b) {
		c.shipBuf = nil
	}
	if c.shipIdle == nil {
		c.shipIdle = time.AfterFunc(shipBufferIdle, func() {
			c.shipMu.Lock()
			c.shipBuf = nil
			c.shipMu.Unlock()
		})
		return
	}
	c.shipIdle.Reset(shipBufferIdle)
}

// reusedBody is a request body over a buffer that is reused once the request is over. A transport
// may read a body after Do has returned (when the server answered before it had read all of it);
// after release, every Read fails instead of reading what the buffer holds next.
type reusedBody struct {
	mu       sync.Mutex
	b        []byte
	released bool
}

var errBodyReleased = errors.New("activity batch body read after its request ended")

func (rb *reusedBody) reader() io.ReadCloser { return io.NopCloser(&bodyReader{body: rb}) }

func (rb *reusedBody) release() {
	rb.mu.Lock()
	rb.released = true
	rb.mu.Unlock()
}

// bodyReader reads a reusedBody from the start.
type bodyReader struct {
	body *reusedBody
	off  int
}

func (r *bodyReader) Read(p []byte) (int, error) {
	rb := r.body
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.released {
		return 0, errBodyReleased
	}
	if r.off >= len(rb.b) {
		return 0, io.EOF
	}
	n := copy(p, rb.b[r.off:])
	r.off += n
	return n, nil
}

// ActivityBody is an ActivityBatch of records built from the records' bytes as they are: they are
// not decoded, checked or re-encoded (json.Marshal of a RawMessage would re-scan each).
func ActivityBody(records []json.RawMessage) ([]byte, error) {
	return AppendActivityBody(nil, records)
}

// AppendActivityBody appends the ActivityBody of records to dst.
func AppendActivityBody(dst []byte, records []json.RawMessage) ([]byte, error) {
	n := len(`{"records":[]}`)
	for _, r := range records {
		if len(r) == 0 {
			return nil, fmt.Errorf("encode activity batch: empty record")
		}
		n += len(r) + 1
	}
	body := append(slices.Grow(dst, n), `{"records":[`...)
	for i, r := range records {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, r...)
	}
	return append(body, "]}"...), nil
}
