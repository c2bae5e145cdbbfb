package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// maxStartupLen is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	maxStartupLen = 10000
	// maxAuthMessageLen bounds a message during authentication (a password, a SASL exchange).
	maxAuthMessageLen = 64 << 10
	// maxMessageLen is the largest regular message PostgreSQL accepts (PQ_LARGE_MESSAGE_LIMIT is
	// 1 GB - 1); larger lengths are corrupt framing.
	maxMessageLen = 1<<30 - 1

	sslRequestCode     = 80877103
	gssEncRequestCode  = 80877104
	cancelRequestCode  = 80877102
	protocolMajor3     = 3
	protocolVersion30  = pgproto3.ProtocolVersion30
	pqOptionPrefix     = "_pq_."
	backendKeySecretV3 = 4 // bytes of cancel secret under protocol 3.0
)

// startup is a decoded StartupMessage. Minor is the protocol minor version the client asked for;
// Unsupported lists "_pq_." options, which this proxy does not implement.
type startup struct {
	Minor       uint16
	Params      map[string]string
	Unsupported []string
}

// readStartup reads exactly one startup-phase packet (SSLRequest, GSSENCRequest, CancelRequest
// or StartupMessage) from r without reading past it, so nothing a client sends before a TLS
// handshake can be mistaken for data sent inside it. It returns *pgproto3.SSLRequest,
// *pgproto3.GSSEncRequest, *pgproto3.CancelRequest or *startup.
func readStartup(r io.Reader) (any, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > maxStartupLen {
		return nil, fmt.Errorf("invalid startup packet length %d", n)
	}
	buf := make([]byte, n-4)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read startup packet: %w", unexpectedEOF(err))
	}
	return decodeStartup(buf)
}

// decodeStartup decodes a startup-phase packet body (after the length word).
func decodeStartup(buf []byte) (any, error) {
	code := binary.BigEndian.Uint32(buf)
	switch code {
	case sslRequestCode:
		if len(buf) != 4 {
			return nil, errors.New("invalid SSLRequest length")
		}
		return &pgproto3.SSLRequest{}, nil
	case gssEncRequestCode:
		if len(buf) != 4 {
			return nil, errors.New("invalid GSSENCRequest length")
		}
		return &pgproto3.GSSEncRequest{}, nil
	case cancelRequestCode:
		var m pgproto3.CancelRequest
		if err := m.Decode(buf); err != nil {
			return nil, fmt.Errorf("decode CancelRequest: %w", err)
		}
		return &m, nil
	}
	if code>>16 != protocolMajor3 {
		return nil, &protocolVersionError{major: code >> 16, minor: code & 0xffff}
	}
	// pgproto3 decodes 3.0 and 3.2 only; the parameters' encoding is the same for every 3.x, and
	// the client is told which minor version it gets (NegotiateProtocolVersion).
	b := append([]byte(nil), buf...)
	binary.BigEndian.PutUint32(b, protocolVersion30)
	var m pgproto3.StartupMessage
	if err := m.Decode(b); err != nil {
		return nil, fmt.Errorf("decode StartupMessage: %w", err)
	}
	s := &startup{Minor: uint16(code & 0xffff), Params: map[string]string{}}
	for k, v := range m.Parameters {
		if strings.HasPrefix(k, pqOptionPrefix) {
			s.Unsupported = append(s.Unsupported, k)
			continue
		}
		s.Params[k] = v
	}
	return s, nil
}

// protocolVersionError is a StartupMessage for a protocol other than 3.x. Like PostgreSQL, the
// engine answers it (other malformed startup packets are dropped without an answer).
type protocolVersionError struct{ major, minor uint32 }

func (e *protocolVersionError) Error() string {
	return fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", e.major, e.minor)
}

// readHeader reads a regular message's type byte and body length.
// It reads in place (Peek), as io.ReadFull into a local array would allocate it.
func readHeader(r *connReader, limit int) (typ byte, n int, err error) {
	hdr, err := r.Peek(5)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	typ = hdr[0]
	l := int64(binary.BigEndian.Uint32(hdr[1:]))
	if l < 4 || l-4 > int64(limit) {
		return 0, 0, fmt.Errorf("invalid length %d for message type %q", l, typ)
	}
	r.Discard(5)
	return typ, int(l - 4), nil
}

// readMessage reads one whole regular message of at most limit body bytes.
func readMessage(r *connReader, limit int) (typ byte, body []byte, err error) {
	typ, n, err := readHeader(r, limit)
	if err != nil {
		return 0, nil, err
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	return typ, body, nil
}

// decodePassword decodes the client's answer to AuthenticationCleartextPassword.
func decodePassword(typ byte, body []byte) (string, error) {
	if typ != 'p' {
		return "", fmt.Errorf("expected a password message, got message type %q", typ)
	}
	var m pgproto3.PasswordMessage
	if err := m.Decode(body); err != nil {
		return "", fmt.Errorf("decode password message: %w", err)
	}
	return m.Password, nil
}

// writeHeader writes a message's type byte and length, into w's buffer (no allocation).
func writeHeader(w *connWriter, typ byte, n int) error {
	b := append(w.AvailableBuffer(), typ)
	b = binary.BigEndian.AppendUint32(b, uint32(n+4))
	_, err := w.Write(b)
	return err
}

// encode appends the wire form of msgs.
func encode(msgs ...interface{ Encode([]byte) ([]byte, error) }) ([]byte, error) {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
