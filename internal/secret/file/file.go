// Package file is the "file" secret source: the credential is the content of a file on the
// sidecar's host (a mounted Kubernetes secret, a Docker secret), without its trailing newline.
// Errors name the path, never the content.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
)

// maxSize bounds what is read: a credential is small, and a wrong path to a large file must not
// load it into memory.
const maxSize = 64 << 10

// Source reads credentials from files.
type Source struct{}

var _ secret.Source = Source{}

// Fetch reads ref.Path.
func (Source) Fetch(_ context.Context, ref gatehouse.SecretRef, _ proxy.Target) (gatehouse.Credential, error) {
	if ref.Source != gatehouse.SourceFile {
		return gatehouse.Credential{}, fmt.Errorf("file source given a %s reference", ref.Source)
	}
	if ref.Path == "" {
		return gatehouse.Credential{}, errors.New("no file named in the reference")
	}
	f, err := os.Open(ref.Path)
	if err != nil {
		return gatehouse.Credential{}, fmt.Errorf("open %s: %w", ref.Path, unwrapPath(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return gatehouse.Credential{}, fmt.Errorf("read %s: %w", ref.Path, unwrapPath(err))
	}
	if len(b) > maxSize {
		return gatehouse.Credential{}, fmt.Errorf("read %s: larger than %d bytes, not a credential", ref.Path, maxSize)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return gatehouse.Credential{}, fmt.Errorf("file %s is empty", ref.Path)
	}
	return gatehouse.NewCredential(v), nil
}

// unwrapPath strips *fs.PathError, whose message repeats the path we already name.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
