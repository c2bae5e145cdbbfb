package postgres

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgproto3"
)

// recordConn is a net.Conn that keeps what is written to it.
type recordConn struct {
	net.Conn
	out    bytes.Buffer
	closed bool
}

func (c *recordConn) Write(b []byte) (int, error)     { return c.out.Write(b) }
func (c *recordConn) Close() error                    { c.closed = true; return nil }
func (c *recordConn) SetReadDeadline(time.Time) error { return nil }

func TestPoolConnWithholdsTerminate(t *testing.T) {
	msgs := func(ms ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range ms {
			b, _ = m.Encode(b)
		}
		return b
	}
	// A CopyData whose payload looks like a Terminate must pass.
	query := msgs(&pgproto3.Query{String: "select 1"})
	copyData := msgs(&pgproto3.CopyData{Data: []byte("X\x00\x00\x00\x04X")})
	sync := msgs(&pgproto3.Parse{Query: "select 1"}, &pgproto3.Sync{})
	terminate := msgs(&pgproto3.Terminate{})
	for _, c := range []struct {
		name   string
		writes [][]byte
		want   []byte
		kept   bool
	}{
		{"query then terminate", [][]byte{append(append([]byte{}, query...), terminate...)}, query, true},
		{"sync then terminate", [][]byte{sync, terminate}, sync, true},
		{"terminate only", [][]byte{terminate}, nil, true},
		{"terminate split", [][]byte{append(append([]byte{}, query...), terminate[:2]...), terminate[2:]}, query, true},
		{"header split", [][]byte{copyData[:3], copyData[3:], query[:7], query[7:], terminate}, append(append([]byte{}, copyData...), query...), true},
		{"copy data then terminate", [][]byte{copyData, terminate}, copyData, false},
		{"no terminate", [][]byte{query}, query, false},
		{"mid batch", [][]byte{msgs(&pgproto3.Parse{Query: "insert"}, &pgproto3.Bind{}, &pgproto3.Execute{}), terminate},
			msgs(&pgproto3.Parse{Query: "insert"}, &pgproto3.Bind{}, &pgproto3.Execute{}), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := &recordConn{}
			pc := &poolConn{Conn: rc}
			for _, w := range c.writes {
				if n, err := pc.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if diff := cmp.Diff(c.want, rc.out.Bytes()); diff != "" {
				t.Errorf("sent upstream (-want +got):\n%s", diff)
			}
			pc.Close()
			if pc.kept.Load() != c.kept || rc.closed == c.kept {
				t.Errorf("kept %v closed %v, want kept %v", pc.kept.Load(), rc.closed, c.kept)
			}
		})
	}
}
