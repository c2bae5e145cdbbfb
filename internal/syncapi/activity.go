package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
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
// of the spool), in the body ActivityBody builds. The body is not built: it is read out of the
// records as they are (under load a batch is megabytes, several times a second), and only while
// ShipActivity runs, since the records are valid only until it returns.
func (c *Client) ShipActivity(ctx context.Context, records []json.RawMessage) error {
	n, err := activityBodyLen(records)
	if err != nil {
		return err
	}
	body := &batchBody{records: records}
	defer body.release()
	req, err := c.newRequest(ctx, http.MethodPost, ActivityPath, body.reader())
	if err != nil {
		return err
	}
	req.ContentLength = int64(n)
	req.GetBody = func() (io.ReadCloser, error) { return body.reader(), nil } // for the transport's retries
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

const batchPrefix, batchSuffix = `{"records":[`, "]}"

// activityBodyLen returns the length of the ActivityBody of records.
func activityBodyLen(records []json.RawMessage) (int, error) {
	n := len(batchPrefix) + len(batchSuffix)
	for i, r := range records {
		if len(r) == 0 {
			return 0, fmt.Errorf("encode activity batch: empty record")
		}
		if i > 0 {
			n++
		}
		n += len(r)
	}
	return n, nil
}

// batchBody is the ActivityBody of records, read out of them. A transport may read a request body
// after Do has returned (when the server answered before it had read all of it); after release,
// every Read fails instead of reading records their owner has since reused.
type batchBody struct {
	mu       sync.Mutex
	records  []json.RawMessage
	released bool
}

var errBodyReleased = errors.New("activity batch body read after its request ended")

func (b *batchBody) reader() io.ReadCloser { return io.NopCloser(&batchReader{body: b}) }

func (b *batchBody) release() {
	b.mu.Lock()
	b.released = true
	b.mu.Unlock()
}

// batchReader reads a batchBody from the start. The body is a sequence of pieces: the prefix,
// then for each record a separator (none before the first) and the record, then the suffix.
type batchReader struct {
	body  *batchBody
	piece int // 0: the prefix; 2i+1: the separator before record i; 2i+2: record i; then the suffix
	off   int // in the piece
}

func (r *batchReader) Read(p []byte) (int, error) {
	b := r.body
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released {
		return 0, errBodyReleased
	}
	last := 2*len(b.records) + 1
	n := 0
	for n < len(p) && r.piece <= last {
		var m int
		var done bool
		switch {
		case r.piece == 0:
			m, done = copyRest(p[n:], batchPrefix, r.off)
		case r.piece == last:
			m, done = copyRest(p[n:], batchSuffix, r.off)
		case r.piece == 1:
			done = true // no separator before the first record
		case r.piece%2 == 1:
			m, done = copyRest(p[n:], ",", r.off)
		default:
			m, done = copyRest(p[n:], b.records[r.piece/2-1], r.off)
		}
		n, r.off = n+m, r.off+m
		if done {
			r.piece, r.off = r.piece+1, 0
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// copyRest copies what is left of piece from off into p, and reports whether that was all of it.
func copyRest[T ~string | ~[]byte](p []byte, piece T, off int) (int, bool) {
	m := copy(p, piece[off:])
	return m, off+m == len(piece)
}

// ActivityBody is an ActivityBatch of records built from the records' bytes as they are: they are
// not decoded, checked or re-encoded (json.Marshal of a RawMessage would re-scan each).
func ActivityBody(records []json.RawMessage) ([]byte, error) {
	n, err := activityBodyLen(records)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 0, n)
	body = append(body, batchPrefix...)
	for i, r := range records {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, r...)
	}
	return append(body, batchSuffix...), nil
}
