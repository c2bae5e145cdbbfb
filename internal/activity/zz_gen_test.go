package activity_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/gatehousedb/gatehouse/internal/activity"
)

func TestGenSeeds(t *testing.T) {
	dir := t.TempDir()
	s, _ := activity.Open(activity.Config{Dir: dir, InstanceID: "i-1", MaxBytes: 4000, SegmentBytes: 2000, Full: activity.DropOldest})
	for i := 0; i < 12; i++ {
		s.Append(context.Background(), stmt(i))
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	write := func(name string, b []byte) {
		os.WriteFile(filepath.Join("testdata/fuzz/FuzzDecodeSegment", name), []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(b))+")\n"), 0o644)
	}
	last, _ := os.ReadFile(segs[len(segs)-1])
	write("with_dropped_record", last)
	first, _ := os.ReadFile(segs[0])
	write("torn_tail", first[:len(first)-7])
	write("damaged_middle", append(append([]byte("{\"seq\":1,\"type\":\"statement\"}\n\x00\xff\n"), first...), []byte("[1,2]\n{\"seq\":\"x\"}\n")...))
	write("crlf_and_blank", []byte("\r\n\n{\"seq\":2,\"type\":\"statement\",\"time\":\"2026-01-01T00:00:00Z\"}\r\n"))
	fmt.Println(len(segs))
}
