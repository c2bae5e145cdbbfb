package activity

import "os"

// SetWriteHook makes the spool write its segment files with write instead of (*os.File).Write.
func SetWriteHook(s *Spool, write func(f *os.File, b []byte) (int, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeHook = write
}

// SetTruncateHook makes the spool cut its segment files with truncate instead of
// (*os.File).Truncate.
func SetTruncateHook(s *Spool, truncate func(f *os.File, size int64) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncateHook = truncate
}

// ReadLinesReusing is ReadLines as the Shipper calls it, reusing its buffers.
var ReadLinesReusing = (*Spool).readLines
