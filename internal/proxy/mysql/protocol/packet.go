package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxPayload is the largest payload one packet carries; a longer message continues in the next
// packet, and a message whose length is a multiple of it ends with an empty packet.
const MaxPayload = 1<<24 - 1

// HeaderLen is the length of a packet header: 3 bytes of payload length, 1 byte of sequence id.
const HeaderLen = 4

// ErrTooLong is returned for a message longer than the reader allows.
var ErrTooLong = errors.New("mysql packet too long")

// ReadHeader reads one packet header.
func ReadHeader(r io.Reader) (length int, seq byte, err error) {
	var h [HeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, err
	}
	return int(uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16), h[3], nil
}

// PutHeader encodes a packet header.
func PutHeader(h []byte, length int, seq byte) {
	h[0], h[1], h[2], h[3] = byte(length), byte(length>>8), byte(length>>16), seq
}

// ReadMessage reads one message: a packet and, when it is MaxPayload long, the packets that
// continue it. It returns the sequence id of the last packet. It reads exactly the message's bytes
// from r, so nothing is consumed ahead of a TLS handshake. max bounds the message length.
func ReadMessage(r io.Reader, max int) (payload []byte, seq byte, err error) {
	for {
		n, s, err := ReadHeader(r)
		if err != nil {
			if len(payload) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, err
		}
		if len(payload)+n > max {
			return nil, 0, fmt.Errorf("%w: more than %d bytes", ErrTooLong, max)
		}
		start := len(payload)
		payload = append(payload, make([]byte, n)...)
		if _, err := io.ReadFull(r, payload[start:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, err
		}
		seq = s
		if n < MaxPayload {
			return payload, seq, nil
		}
	}
}

// AppendMessage appends payload framed as packets starting at sequence id seq, and returns the
// sequence id of the last packet written.
func AppendMessage(b []byte, seq byte, payload []byte) ([]byte, byte) {
	var h [HeaderLen]byte
	for {
		n := min(len(payload), MaxPayload)
		PutHeader(h[:], n, seq)
		b = append(b, h[:]...)
		b = append(b, payload[:n]...)
		payload = payload[n:]
		if n < MaxPayload {
			return b, seq
		}
		seq++
	}
}

// WriteMessage writes payload framed as packets starting at seq and returns the last sequence id.
func WriteMessage(w io.Writer, seq byte, payload []byte) (byte, error) {
	b, last := AppendMessage(make([]byte, 0, len(payload)+HeaderLen), seq, payload)
	_, err := w.Write(b)
	return last, err
}

// reader decodes fields of a payload; the first error sticks and every later read returns zero.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("packet too short")

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail(errShort)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte1() byte {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) uint16() uint16 {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *reader) uint32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// nulString reads a NUL-terminated string; without a NUL it takes the rest (servers and clients
// omit the last NUL in places).
func (r *reader) nulString() string {
	if r.err != nil {
		return ""
	}
	for i, c := range r.b {
		if c == 0 {
			s := string(r.b[:i])
			r.b = r.b[i+1:]
			return s
		}
	}
	s := string(r.b)
	r.b = r.b[len(r.b):]
	return s
}

func (r *reader) lenencInt() uint64 {
	c := r.byte1()
	switch {
	case r.err != nil:
		return 0
	case c < 0xfb:
		return uint64(c)
	case c == 0xfc:
		return uint64(r.uint16())
	case c == 0xfd:
		b := r.bytes(3)
		if b == nil {
			return 0
		}
		return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16
	case c == 0xfe:
		b := r.bytes(8)
		if b == nil {
			return 0
		}
		return binary.LittleEndian.Uint64(b)
	}
	r.fail(fmt.Errorf("invalid length-encoded integer prefix 0x%x", c))
	return 0
}

func (r *reader) lenencBytes() []byte {
	n := r.lenencInt()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(errShort)
		return nil
	}
	return r.bytes(int(n))
}

func (r *reader) rest() []byte {
	if r.err != nil {
		return nil
	}
	v := r.b
	r.b = nil
	return v
}

func appendLenencInt(b []byte, n uint64) []byte {
	switch {
	case n < 0xfb:
		return append(b, byte(n))
	case n <= 0xffff:
		return append(b, 0xfc, byte(n), byte(n>>8))
	case n <= 0xffffff:
		return append(b, 0xfd, byte(n), byte(n>>8), byte(n>>16))
	}
	return binary.LittleEndian.AppendUint64(append(b, 0xfe), n)
}

func appendLenencBytes(b, v []byte) []byte {
	return append(appendLenencInt(b, uint64(len(v))), v...)
}

// ReadLenEncInt decodes the length-encoded integer at the start of b and returns it with the
// number of bytes it took. ok is false when b is too short or starts with a byte that is not an
// integer prefix (0xFB NULL, 0xFF).
func ReadLenEncInt(b []byte) (n uint64, size int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch b[0] {
	case 0xfb, 0xff:
		return 0, 0, false
	case 0xfc:
		size = 3
	case 0xfd:
		size = 4
	case 0xfe:
		size = 9
	default:
		return uint64(b[0]), 1, true
	}
	if len(b) < size {
		return 0, 0, false
	}
	for i := size - 1; i >= 1; i-- {
		n = n<<8 | uint64(b[i])
	}
	return n, size, true
}
