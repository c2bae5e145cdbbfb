package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// Packet header bytes.
const (
	OKHeader           = 0x00
	AuthMoreDataHeader = 0x01
	LocalInfileHeader  = 0xfb
	EOFHeader          = 0xfe // also AuthSwitchRequest during authentication
	ErrHeader          = 0xff
)

// Handshake is the server's initial handshake, protocol version 10.
type Handshake struct {
	ServerVersion string
	ConnectionID  uint32
	// AuthData is the scramble: 20 bytes for the plugins Gatehouse uses.
	AuthData     []byte
	Capabilities uint32
	Charset      byte
	Status       uint16
	AuthPlugin   string
	// MariaDBCapabilities are MariaDB's extended capabilities, sent in the reserved bytes when
	// CLIENT_LONG_PASSWORD (CLIENT_MYSQL) is clear.
	MariaDBCapabilities uint32
}

// Encode returns the handshake's payload.
func (h *Handshake) Encode() []byte {
	auth := h.AuthData
	b := []byte{10}
	b = append(b, h.ServerVersion...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint32(b, h.ConnectionID)
	part1 := auth[:min(8, len(auth))]
	b = append(b, part1...)
	b = append(b, make([]byte, 8-len(part1))...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(h.Capabilities))
	b = append(b, h.Charset)
	b = binary.LittleEndian.AppendUint16(b, h.Status)
	b = binary.LittleEndian.AppendUint16(b, uint16(h.Capabilities>>16))
	if h.Capabilities&mysql.CLIENT_PLUGIN_AUTH != 0 {
		b = append(b, byte(len(auth)+1))
	} else {
		b = append(b, 0)
	}
	b = append(b, make([]byte, 6)...)
	b = binary.LittleEndian.AppendUint32(b, h.MariaDBCapabilities)
	if h.Capabilities&mysql.CLIENT_SECURE_CONNECTION != 0 {
		part2 := auth[len(part1):]
		b = append(b, part2...)
		if n := 13 - len(part2) - 1; n > 0 {
			b = append(b, make([]byte, n)...)
		}
		b = append(b, 0)
	}
	if h.Capabilities&mysql.CLIENT_PLUGIN_AUTH != 0 {
		b = append(b, h.AuthPlugin...)
		b = append(b, 0)
	}
	return b
}

// DecodeHandshake decodes a server's initial handshake. An ERR packet (a server refusing the
// connection: too many connections, host blocked) comes back as *Error.
func DecodeHandshake(p []byte) (*Handshake, error) {
	if len(p) > 0 && p[0] == ErrHeader {
		e, err := DecodeError(p, true)
		if err != nil {
			return nil, err
		}
		return nil, e
	}
	r := &reader{b: p}
	if v := r.byte1(); r.err == nil && v != 10 {
		return nil, fmt.Errorf("unsupported handshake protocol version %d", v)
	}
	h := &Handshake{}
	h.ServerVersion = r.nulString()
	h.ConnectionID = r.uint32()
	auth := append([]byte(nil), r.bytes(8)...)
	r.byte1() // filler
	h.Capabilities = uint32(r.uint16())
	if r.err != nil {
		return nil, fmt.Errorf("decode handshake: %w", r.err)
	}
	if h.Capabilities&mysql.CLIENT_PROTOCOL_41 == 0 {
		return nil, errors.New("the server does not speak protocol 4.1")
	}
	h.Charset = r.byte1()
	h.Status = r.uint16()
	h.Capabilities |= uint32(r.uint16()) << 16
	authLen := int(r.byte1())
	r.bytes(6)
	h.MariaDBCapabilities = r.uint32()
	if r.err != nil {
		return nil, fmt.Errorf("decode handshake: %w", r.err)
	}
	if h.Capabilities&mysql.CLIENT_LONG_PASSWORD != 0 {
		h.MariaDBCapabilities = 0
	}
	if h.Capabilities&mysql.CLIENT_SECURE_CONNECTION != 0 {
		n := max(13, authLen-8)
		part2 := r.bytes(min(n, len(r.b)))
		// The scramble's second part ends with a NUL that is not part of it.
		if len(part2) > 0 && part2[len(part2)-1] == 0 {
			part2 = part2[:len(part2)-1]
		}
		auth = append(auth, part2...)
	}
	h.AuthData = auth
	if h.Capabilities&mysql.CLIENT_PLUGIN_AUTH != 0 {
		h.AuthPlugin = r.nulString()
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode handshake: %w", r.err)
	}
	return h, nil
}

// SSLRequestLen is the payload length of an SSLRequest: the first 32 bytes of a
// HandshakeResponse41.
const SSLRequestLen = 32

// Attr is one connection attribute; order is kept, as clients sent it.
type Attr struct{ Key, Value string }

// HandshakeResponse is the client's HandshakeResponse41, or an SSLRequest (SSLRequest set, only
// the first four fields filled).
type HandshakeResponse struct {
	Capabilities  uint32
	MaxPacketSize uint32
	Charset       byte
	// MariaDBCapabilities are MariaDB's extended client capabilities (last 4 reserved bytes).
	MariaDBCapabilities uint32
	SSLRequest          bool

	User         string
	AuthResponse []byte
	Database     string
	AuthPlugin   string
	Attrs        []Attr
	ZstdLevel    byte
}

// DecodeHandshakeResponse decodes a client's SSLRequest or HandshakeResponse41. Pre-4.1 clients are
// refused.
func DecodeHandshakeResponse(p []byte) (*HandshakeResponse, error) {
	r := &reader{b: p}
	m := &HandshakeResponse{}
	m.Capabilities = r.uint32()
	if r.err != nil {
		return nil, fmt.Errorf("decode handshake response: %w", r.err)
	}
	if m.Capabilities&mysql.CLIENT_PROTOCOL_41 == 0 {
		return nil, errors.New("the client does not speak protocol 4.1; upgrade the client")
	}
	m.MaxPacketSize = r.uint32()
	m.Charset = r.byte1()
	r.bytes(19)
	m.MariaDBCapabilities = r.uint32()
	if r.err != nil {
		return nil, fmt.Errorf("decode handshake response: %w", r.err)
	}
	if len(r.b) == 0 && m.Capabilities&mysql.CLIENT_SSL != 0 {
		m.SSLRequest = true
		return m, nil
	}
	m.User = r.nulString()
	switch {
	case m.Capabilities&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		m.AuthResponse = r.lenencBytes()
	case m.Capabilities&mysql.CLIENT_SECURE_CONNECTION != 0:
		n := int(r.byte1())
		m.AuthResponse = r.bytes(n)
	default:
		m.AuthResponse = []byte(r.nulString())
	}
	if m.Capabilities&mysql.CLIENT_CONNECT_WITH_DB != 0 && len(r.b) > 0 {
		m.Database = r.nulString()
	}
	if m.Capabilities&mysql.CLIENT_PLUGIN_AUTH != 0 && len(r.b) > 0 {
		m.AuthPlugin = r.nulString()
	}
	if m.Capabilities&mysql.CLIENT_CONNECT_ATTRS != 0 && len(r.b) > 0 {
		attrs := &reader{b: r.lenencBytes()}
		for r.err == nil && attrs.err == nil && len(attrs.b) > 0 {
			k := attrs.lenencBytes()
			v := attrs.lenencBytes()
			if attrs.err == nil {
				m.Attrs = append(m.Attrs, Attr{Key: string(k), Value: string(v)})
			}
		}
		if attrs.err != nil {
			r.fail(fmt.Errorf("connection attributes: %w", attrs.err))
		}
	}
	if m.Capabilities&mysql.CLIENT_ZSTD_COMPRESSION_ALGORITHM != 0 && len(r.b) > 0 {
		m.ZstdLevel = r.byte1()
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode handshake response: %w", r.err)
	}
	m.AuthResponse = append([]byte(nil), m.AuthResponse...)
	return m, nil
}

// Encode returns the payload: the 32-byte SSLRequest when SSLRequest is set, else the full
// HandshakeResponse41 (CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_CONNECT_WITH_DB and
// CLIENT_CONNECT_ATTRS decide which fields are written).
func (m *HandshakeResponse) Encode() []byte {
	b := binary.LittleEndian.AppendUint32(nil, m.Capabilities)
	b = binary.LittleEndian.AppendUint32(b, m.MaxPacketSize)
	b = append(b, m.Charset)
	b = append(b, make([]byte, 19)...)
	b = binary.LittleEndian.AppendUint32(b, m.MariaDBCapabilities)
	if m.SSLRequest {
		return b
	}
	b = append(b, m.User...)
	b = append(b, 0)
	switch {
	case m.Capabilities&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		b = appendLenencBytes(b, m.AuthResponse)
	case m.Capabilities&mysql.CLIENT_SECURE_CONNECTION != 0:
		b = append(b, byte(len(m.AuthResponse)))
		b = append(b, m.AuthResponse...)
	default:
		b = append(b, m.AuthResponse...)
		b = append(b, 0)
	}
	if m.Capabilities&mysql.CLIENT_CONNECT_WITH_DB != 0 {
		b = append(b, m.Database...)
		b = append(b, 0)
	}
	if m.Capabilities&mysql.CLIENT_PLUGIN_AUTH != 0 {
		b = append(b, m.AuthPlugin...)
		b = append(b, 0)
	}
	if m.Capabilities&mysql.CLIENT_CONNECT_ATTRS != 0 {
		var attrs []byte
		for _, a := range m.Attrs {
			attrs = appendLenencBytes(attrs, []byte(a.Key))
			attrs = appendLenencBytes(attrs, []byte(a.Value))
		}
		b = appendLenencBytes(b, attrs)
	}
	if m.Capabilities&mysql.CLIENT_ZSTD_COMPRESSION_ALGORITHM != 0 {
		b = append(b, m.ZstdLevel)
	}
	return b
}

// Error is an ERR packet.
type Error struct {
	Code    uint16
	State   string // SQLSTATE, 5 characters
	Message string
}

func (e *Error) Error() string {
	if e.State == "" {
		return fmt.Sprintf("ERROR %d: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("ERROR %d (%s): %s", e.Code, e.State, e.Message)
}

// Encode returns the ERR payload in the 4.1 format.
func (e *Error) Encode() []byte {
	state := e.State
	if len(state) != 5 {
		state = "HY000"
	}
	b := []byte{ErrHeader}
	b = binary.LittleEndian.AppendUint16(b, e.Code)
	b = append(b, '#')
	b = append(b, state...)
	return append(b, e.Message...)
}

// DecodeError decodes an ERR payload. protocol41 says whether the SQLSTATE marker may be present.
func DecodeError(p []byte, protocol41 bool) (*Error, error) {
	r := &reader{b: p}
	if r.byte1() != ErrHeader {
		return nil, errors.New("not an ERR packet")
	}
	e := &Error{Code: r.uint16()}
	if r.err != nil {
		return nil, fmt.Errorf("decode ERR packet: %w", r.err)
	}
	if protocol41 && len(r.b) >= 6 && r.b[0] == '#' {
		r.bytes(1)
		e.State = string(r.bytes(5))
	}
	e.Message = string(r.rest())
	return e, nil
}

// AuthSwitchRequest asks the client to authenticate with another plugin.
type AuthSwitchRequest struct {
	Plugin string
	Data   []byte
}

// Encode returns the payload; the data is NUL-terminated as servers send it.
func (m *AuthSwitchRequest) Encode() []byte {
	b := []byte{EOFHeader}
	b = append(b, m.Plugin...)
	b = append(b, 0)
	b = append(b, m.Data...)
	return append(b, 0)
}

// DecodeAuthSwitchRequest decodes an AuthSwitchRequest, dropping the trailing NUL of the data.
func DecodeAuthSwitchRequest(p []byte) (*AuthSwitchRequest, error) {
	r := &reader{b: p}
	if r.byte1() != EOFHeader {
		return nil, errors.New("not an AuthSwitchRequest")
	}
	m := &AuthSwitchRequest{Plugin: r.nulString()}
	m.Data = append([]byte(nil), r.rest()...)
	if n := len(m.Data); n > 0 && m.Data[n-1] == 0 {
		m.Data = m.Data[:n-1]
	}
	if r.err != nil || m.Plugin == "" {
		return nil, errors.New("decode AuthSwitchRequest: no plugin name")
	}
	return m, nil
}

// AuthMoreData returns an AuthMoreData payload.
func AuthMoreData(data ...byte) []byte { return append([]byte{AuthMoreDataHeader}, data...) }

// OK returns a minimal OK payload (no rows affected, no insert id, the given status flags, no
// warnings).
func OK(status uint16) []byte {
	b := []byte{OKHeader, 0, 0}
	b = binary.LittleEndian.AppendUint16(b, status)
	return append(b, 0, 0)
}
