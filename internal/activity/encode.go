package activity

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecord appends the JSON encoding of r to dst, byte for byte what json.Marshal(r) gives
// (field order, omitempty, HTML-safe string escaping, float and time formats): it is the form the
// hash chain covers, so the two must never differ (TestAppendRecordIsMarshal, FuzzAppendRecord).
// It exists because the spool encodes a record for every statement, and json.Marshal's reflection
// and allocations were a tenth of the sidecar's CPU. It reports false, having appended nothing
// usable, for what it does not handle (a time outside years 0–9999, a non-finite duration); the
// caller then uses encoding/json.
func appendRecord(dst []byte, r *Record) ([]byte, bool) {
	if y := r.Time.Year(); y < 0 || y > 9999 || !finite(r.DurationMS) || !finite(r.End.DurationMS) {
		return dst, false
	}
	b := append(dst, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, r.Type)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendStringField(b, `,"sidecar_id":`, r.SidecarID)
	b = appendStringField(b, `,"instance_id":`, r.InstanceID)
	b = appendStringField(b, `,"session_id":`, r.SessionID)
	if r.Ref != 0 {
		b = append(b, `,"ref":`...)
		b = strconv.AppendUint(b, r.Ref, 10)
	}
	b = appendStringField(b, `,"user":`, r.User)
	b = appendStringsField(b, `,"groups":`, r.Groups)
	b = appendStringField(b, `,"repository":`, r.Repository)
	b = appendStringField(b, `,"repository_user":`, r.RepositoryUser)
	b = appendStringField(b, `,"client_addr":`, r.ClientAddr)
	b = appendStringField(b, `,"application":`, r.Application)
	if r.TLS {
		b = append(b, `,"tls":true`...)
	}
	b = appendStringField(b, `,"outcome":`, r.Outcome)
	b = appendStringField(b, `,"reason":`, r.Reason)
	b = appendStringField(b, `,"statement":`, r.Statement)
	b = appendStringField(b, `,"fingerprint":`, r.Fingerprint)
	b = appendStringField(b, `,"kind":`, r.Kind)
	b = appendStringsField(b, `,"objects":`, r.Objects)
	b = appendStringsField(b, `,"params":`, r.Params)
	b = appendStringField(b, `,"decision":`, r.Decision)
	b = appendStringField(b, `,"rule":`, r.Rule)
	b = appendStringField(b, `,"mode":`, r.Mode)
	b = appendIntField(b, `,"rows":`, r.Rows)
	if r.DurationMS != 0 {
		b = append(b, `,"duration_ms":`...)
		b = appendJSONFloat(b, r.DurationMS)
	}
	b = appendStringField(b, `,"error_code":`, r.ErrorCode)
	b = appendIntField(b, `,"bytes_in":`, r.BytesIn)
	b = appendIntField(b, `,"bytes_out":`, r.BytesOut)
	if len(r.Gaps) > 0 {
		b = append(b, `,"gaps":[`...)
		for i := range r.Gaps {
			g := &r.Gaps[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"instance_id":`...)
			b = appendJSONString(b, g.InstanceID)
			b = append(b, `,"from":`...)
			b = strconv.AppendUint(b, g.From, 10)
			b = append(b, `,"to":`...)
			b = strconv.AppendUint(b, g.To, 10)
			b = appendStringField(b, `,"prev_hash":`, g.PrevHash)
			b = append(b, `,"last_hash":`...)
			b = appendJSONString(b, g.LastHash)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if e := &r.End; *e != (End{}) {
		b = append(b, `,"end":{"ref":`...)
		b = strconv.AppendUint(b, e.Ref, 10)
		b = appendIntField(b, `,"rows":`, e.Rows)
		if e.DurationMS != 0 {
			b = append(b, `,"duration_ms":`...)
			b = appendJSONFloat(b, e.DurationMS)
		}
		b = appendStringField(b, `,"error_code":`, e.ErrorCode)
		b = appendStringField(b, `,"reason":`, e.Reason)
		b = append(b, '}')
	}
	b = appendStringField(b, `,"prev_hash":`, r.PrevHash)
	b = appendStringField(b, `,"hash":`, r.Hash)
	return append(b, '}'), true
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func appendStringField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

func appendStringsField(b []byte, key string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	return AppendJSONStrings(append(b, key...), vs)
}

// AppendJSONStrings appends vs as a JSON array, with encoding/json's bytes for each string (see
// appendJSONString).
func AppendJSONStrings(b []byte, vs []string) []byte {
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

func appendIntField(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), v, 10)
}

// appendJSONFloat formats like encoding/json's float64 encoder (ES6 number formatting).
func appendJSONFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does with HTML escaping on (its default): <, > and &
// as \u003c, \u003e, \u0026; control characters; invalid UTF-8 as \ufffd; U+2028 and U+2029
// escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
