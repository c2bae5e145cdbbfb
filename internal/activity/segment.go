package activity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// A segment file is JSON Lines: one canonical record per line, each line ending in '\n'. Readable
// with jq; a record cut short by a crash is a last line without its '\n'.

const segPrefix, segSuffix = "seg-", ".jsonl"

func segName(n uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, n, segSuffix) }

func parseSegName(name string) (uint64, bool) {
	if !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
		return 0, false
	}
	n, err := strconv.ParseUint(name[len(segPrefix):len(name)-len(segSuffix)], 10, 64)
	return n, err == nil && n > 0
}

// SegmentEntry is one decoded line of a segment file: the record and the offset just past its line.
type SegmentEntry struct {
	Record Record
	End    int64
}

// DecodeSegment decodes the lines of segment data. Lines that are not a record (a damaged disk, an
// edit) are skipped and counted in corrupt; tail is the length of a last line without '\n', which a
// crash during a write leaves and which is not a record.
func DecodeSegment(data []byte) (entries []SegmentEntry, corrupt int, tail int) {
	off := 0
	for off < len(data) {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			return entries, corrupt, len(data) - off
		}
		line := data[off : off+nl]
		off += nl + 1
		var r Record
		if len(line) == 0 || json.Unmarshal(line, &r) != nil || r.Seq == 0 || r.Type == "" {
			corrupt++
			continue
		}
		entries = append(entries, SegmentEntry{Record: r, End: int64(off)})
	}
	return entries, corrupt, 0
}
