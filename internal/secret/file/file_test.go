package file_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret/file"
)

func TestFetch(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain", "pw-one")
	newline := write("newline", "pw-two\n")
	crlf := write("crlf", "pw-three\r\n")
	inner := write("inner", "pw four \n\n")
	empty := write("empty", "\n")
	big := write("big", strings.Repeat("x", 70<<10))
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name, path, want, wantErr string
	}{
		{name: "plain", path: plain, want: "pw-one"},
		{name: "trailing newline", path: newline, want: "pw-two"},
		{name: "trailing crlf", path: crlf, want: "pw-three"},
		{name: "only one newline trimmed", path: inner, want: "pw four \n"},
		{name: "empty", path: empty, wantErr: "file " + empty + " is empty"},
		{name: "missing", path: missing, wantErr: "open " + missing + ": no such file or directory"},
		{name: "too big", path: big, wantErr: "read " + big + ": larger than 65536 bytes, not a credential"},
		{name: "directory", path: dir, wantErr: "read " + dir + ": is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := file.Source{}.Fetch(context.Background(), gatehouse.SecretRef{Source: gatehouse.SourceFile, Path: tc.path}, proxy.Target{})
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(tc.wantErr, gotErr); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if c.Reveal() != tc.want {
				t.Errorf("value = %q, want %q", c.Reveal(), tc.want)
			}
		})
	}
}
