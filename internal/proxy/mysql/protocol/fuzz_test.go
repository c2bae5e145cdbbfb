package protocol_test

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse/internal/proxy/mysql/protocol"
)

// FuzzDecodeHandshakeResponse feeds the decoder of the first bytes an untrusted client sends. The
// committed seeds (testdata/fuzz) are responses captured from the mariadb CLI, go-sql-driver and
// the go-mysql client, and an SSLRequest.
func FuzzDecodeHandshakeResponse(f *testing.F) {
	f.Add((&protocol.HandshakeResponse{Capabilities: 0x000fa68d, MaxPacketSize: 1 << 24, Charset: 45, User: "app",
		AuthResponse: bytes.Repeat([]byte{7}, 32), Database: "app", AuthPlugin: "caching_sha2_password",
		Attrs: []protocol.Attr{{"_client_name", "libmariadb"}, {"program_name", "mariadb"}}}).Encode())
	f.Add((&protocol.HandshakeResponse{Capabilities: 0x00000a00, SSLRequest: true}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := protocol.DecodeHandshakeResponse(b)
		if err != nil || m.SSLRequest {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := protocol.DecodeHandshakeResponse(m.Encode())
		if err != nil {
			t.Fatalf("re-encoded response does not decode: %v", err)
		}
		if m.User != again.User || m.Database != again.Database || !bytes.Equal(m.AuthResponse, again.AuthResponse) || len(m.Attrs) != len(again.Attrs) {
			t.Fatalf("round trip changed the response: %+v -> %+v", m, again)
		}
	})
}

// FuzzDecodeHandshake feeds the decoder of a repository's initial handshake.
func FuzzDecodeHandshake(f *testing.F) {
	f.Add((&protocol.Handshake{ServerVersion: "5.5.5-10.11.14-MariaDB", ConnectionID: 7, AuthData: bytes.Repeat([]byte{'a'}, 20),
		Capabilities: 0xf7fe | 0x81bf<<16, Charset: 45, Status: 2, AuthPlugin: "mysql_native_password"}).Encode())
	f.Add((&protocol.Error{Code: 1040, State: "08004", Message: "Too many connections"}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		protocol.DecodeHandshake(b)
		protocol.DecodeAuthSwitchRequest(b)
		protocol.DecodeError(b, true)
	})
}

func TestHandshakeRoundTrip(t *testing.T) {
	in := &protocol.Handshake{ServerVersion: "8.0.0-gatehouse", ConnectionID: 42, AuthData: []byte("abcdefghijklmnopqrst"),
		Capabilities: 0x00ffa28f | 1<<19, Charset: 45, Status: 2, AuthPlugin: "caching_sha2_password"}
	out, err := protocol.DecodeHandshake(in.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("handshake round trip (-want +got):\n%s", diff)
	}
}

func TestReadMessageJoinsLongPackets(t *testing.T) {
	payload := bytes.Repeat([]byte{1}, protocol.MaxPayload+10)
	var buf bytes.Buffer
	last, err := protocol.WriteMessage(&buf, 3, payload)
	if err != nil || last != 4 {
		t.Fatalf("write: last seq %d, %v", last, err)
	}
	got, seq, err := protocol.ReadMessage(&buf, 1<<25)
	if err != nil || seq != 4 || !bytes.Equal(got, payload) {
		t.Fatalf("read: %d bytes, seq %d, %v", len(got), seq, err)
	}
}
