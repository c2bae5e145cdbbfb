// Package rawconn makes a TCP connection's reads and writes plain system calls on its non-blocking
// socket, leaving Go's netpoller to wait only when the socket would block.
//
// Why: a goroutine that reads or writes a net.TCPConn enters the runtime's system call state
// (entersyscall/exitsyscall). When the call takes longer than the runtime's monitor tick (20 µs)
// and other goroutines are waiting, the monitor hands the goroutine's processor to another thread,
// and the goroutine has to find a processor again when the call returns: futex wake-ups, thread
// switches and, on a VM, inter-processor interrupts through the hypervisor. On a virtual machine a
// loopback write often takes 10–20 µs — the kernel runs the receiving side's TCP work in the
// sender's call — so a proxy that makes two or three of them per query pays for hand-offs on many
// of them. A read or write on a non-blocking socket never blocks (it returns EAGAIN instead), so it
// can be made as a raw system call that the scheduler does not see; the bench harness measured a
// bare Go TLS relay drop from 22–25 to 19–22 µs of CPU per query at 8 clients, and from 64–72 to
// 41–42 µs at 1 client, with this alone (docs/performance.md).
//
// Nothing maintained does this (the standard library's syscall.RawConn is the hook it builds
// on), so it is ours: two small functions per direction. Deadlines, Close and the error types
// callers test for (net.ErrClosed, os.ErrDeadlineExceeded, io.EOF) behave as they do on the
// wrapped connection, because the waiting is still done by the wrapped connection's poller.
//
// Only sockets: a file write can block on the disk, and a raw call that blocks holds a processor
// the scheduler cannot take back.
package rawconn
