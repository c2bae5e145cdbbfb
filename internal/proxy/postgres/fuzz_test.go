package postgres

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup-phase packets are the first bytes an unauthenticated client sends; the committed corpus
// under testdata/fuzz holds packets captured from psql 15 and pgx v5 plus malformed ones.

func FuzzReadStartup(f *testing.F) {
	f.Add(mustEncode(f, &pgproto3.SSLRequest{}))
	f.Add(mustEncode(f, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "app@sales", "database": "app"}}))
	f.Add(mustEncode(f, &pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		msg, err := readStartup(r)
		if err != nil {
			return
		}
		// Exactly one packet was consumed: nothing after it may be read before a TLS handshake.
		n := int(binary.BigEndian.Uint32(data))
		if got := len(data) - r.Len(); got != n {
			t.Fatalf("consumed %d bytes of a %d-byte packet", got, n)
		}
		if s, ok := msg.(*startup); ok {
			for k := range s.Params {
				if strings.HasPrefix(k, pqOptionPrefix) {
					t.Fatalf("protocol option %q kept as a parameter", k)
				}
			}
		}
	})
}

func FuzzAuthMessage(f *testing.F) {
	f.Add(mustEncode(f, &pgproto3.PasswordMessage{Password: "gh1_token"}))
	f.Add(mustEncode(f, &pgproto3.Query{String: "select 1"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, body, err := readMessage(newConnReader(bytes.NewReader(data), newBufferPool()), maxAuthMessageLen)
		if err != nil {
			return
		}
		if len(body) > maxAuthMessageLen {
			t.Fatalf("body of %d bytes read past the limit", len(body))
		}
		decodePassword(typ, body)
		// The decoders governance runs on statement messages and server answers.
		cstr(body)
		errorCode(body)
		commandRows(body)
		schemaFromRow(body)
		bindParams(body)
	})
}

func FuzzSCRAMServerFirst(f *testing.F) {
	f.Add("r=abc123,s=c2FsdA==,i=4096")
	f.Add("r=,s=,i=")
	f.Fuzz(func(t *testing.T, msg string) {
		sf, err := parseSCRAMServerFirst(msg)
		if err == nil && (sf.iterations < 1 || sf.iterations > maxSCRAMIterations || len(sf.salt) == 0) {
			t.Fatalf("accepted %q: %+v", msg, sf)
		}
	})
}

func mustEncode(tb testing.TB, m interface{ Encode([]byte) ([]byte, error) }) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestDecodeStartup(t *testing.T) {
	v32 := mustEncode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32,
		Parameters: map[string]string{"user": "u", "_pq_.test": "1"}})
	msg, err := readStartup(bytes.NewReader(v32))
	if err != nil {
		t.Fatal(err)
	}
	s := msg.(*startup)
	if s.Minor != 2 || s.Params["user"] != "u" || len(s.Unsupported) != 1 || s.Unsupported[0] != "_pq_.test" {
		t.Errorf("3.2 startup decoded as %+v", s)
	}
	v20 := []byte{0, 0, 0, 8, 0, 2, 0, 0}
	if _, err := readStartup(bytes.NewReader(v20)); err == nil || err.Error() != "unsupported frontend protocol 2.0: server supports 3.0" {
		t.Errorf("protocol 2.0: %v", err)
	}
	// SSLRequest with bytes after it: only the request is consumed.
	ssl := append(mustEncode(t, &pgproto3.SSLRequest{}), 'Q', 0, 0, 0, 5, 0)
	r := bytes.NewReader(ssl)
	if _, err := readStartup(r); err != nil || r.Len() != 6 {
		t.Errorf("SSLRequest: err %v, %d bytes left, want 6", err, r.Len())
	}
}
