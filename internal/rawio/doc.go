// Package rawio makes the reads and writes on the sidecar's statement path plain system calls that
// Go's scheduler does not see: client and upstream TCP connections (WrapConn), and the activity
// spool's appends (File).
//
// Why: a goroutine that reads or writes a net.Conn or an *os.File enters the runtime's system call
// state (entersyscall/exitsyscall). That is cheap by itself, but it has two costs a proxy pays per
// query on a virtual machine:
//
//   - When every processor has gone idle (one client waiting for its query's result), the
//     runtime's monitor thread sleeps until a goroutine next enters a system call, which wakes
//     it; it then polls every 20 µs for about a millisecond before it sleeps again. At one client
//     that is a futex wake-up and dozens of short sleeps per query.
//   - When a call takes longer than the monitor's 20 µs tick and other goroutines are waiting, the
//     monitor hands the goroutine's processor to another thread, and the goroutine has to find a
//     processor again when the call returns. A loopback write often takes 10–20 µs on a VM (the
//     kernel runs the receiving side's TCP work in the sender's call).
//
// A read or write on a non-blocking socket never blocks (it returns EAGAIN instead), so it can be
// made as a raw system call, and the netpoller is asked to wait only when the socket would block.
// The bench harness measured a bare Go TLS relay fall from 22–25 to 19–22 µs of CPU per query at 8
// clients and from 64–72 to 41–42 µs at 1 client with this alone (docs/performance.md).
//
// A write to a regular file can block on the disk (dirty-page throttling, reclaim), and a raw call
// that blocks holds its processor: goroutines queued on it move to other processors only when
// those look for work, and a garbage collection waits for the call to return. File is therefore
// for one writer only — the activity spool, whose appends are on every statement's path and are
// made one at a time under the spool's lock, so at most one processor is ever held this way.
//
// Nothing maintained does this (syscall.RawConn is the standard library's hook it builds on), so it
// is ours: a few small functions. Deadlines, Close and the errors callers test for (net.ErrClosed,
// os.ErrDeadlineExceeded, io.EOF) behave as on the wrapped connection, because waiting is still
// done by its poller; on other systems than Linux both wrappers use the ordinary calls.
package rawio
