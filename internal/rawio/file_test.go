package rawio_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehousedb/gatehouse/internal/rawio"
)

func TestFileAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	w, err := rawio.NewFile(f)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3<<20)
	rand.Read(big)
	var want bytes.Buffer
	for _, b := range [][]byte{[]byte("first line\n"), big, []byte("last line\n")} {
		n, err := w.Write(b)
		if err != nil || n != len(b) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(b), n, err)
		}
		want.Write(b)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the file holds %d bytes, want the %d written, in order", len(got), want.Len())
	}

	// After Close, Write fails as (*os.File).Write does, and names the file.
	n, err := w.Write([]byte("late"))
	var pe *fs.PathError
	if n != 0 || !errors.As(err, &pe) || pe.Path != path || !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close = %d, %v; want 0 and a *fs.PathError for %s wrapping os.ErrClosed", n, err, path)
	}
}

func TestFileWriteErrorNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "read-only")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path) // read-only: write(2) fails with EBADF
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := rawio.NewFile(f)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Write([]byte("x"))
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != path || pe.Op != "write" {
		t.Fatalf("Write to a read-only file = %v, want a *fs.PathError for write on %s", err, path)
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Fatalf("the read-only file now holds %q", b)
	}
}
