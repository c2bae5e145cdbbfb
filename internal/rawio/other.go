//go:build !linux

package rawio

import (
	"net"
	"os"
)

// WrapConn returns c as it is: raw system calls are only made on Linux.
func WrapConn(c net.Conn) net.Conn { return c }

// File is an *os.File; on Linux its Write is raw write(2)s.
type File struct{ f *os.File }

// NewFile wraps f.
func NewFile(f *os.File) (*File, error) { return &File{f: f}, nil }

// Write writes all of b.
func (f *File) Write(b []byte) (int, error) { return f.f.Write(b) }
