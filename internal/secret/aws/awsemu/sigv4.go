package awsemu

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	amzDateFormat  = "20060102T150405Z"
	shortDate      = "20060102"
	hmacAlgorithm  = "AWS4-HMAC-SHA256"
	maxClockSkew   = 5 * time.Minute
	maxPresignLife = 15 * time.Minute
)

// sigv4 is a parsed SigV4 authorization: from the Authorization header or a presigned query.
type sigv4 struct {
	algorithm     string
	credential    string // access key ID, or certificate serial for SigV4-X509
	date          string // YYYYMMDD of the scope
	region        string
	service       string
	signedHeaders []string
	signature     string
	amzDate       time.Time
}

func (a sigv4) scope() string {
	return a.date + "/" + a.region + "/" + a.service + "/aws4_request"
}

// errSignature is what a request whose signature does not match is refused with.
var errSignature = errors.New("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")

// parseAuthorization parses "ALG Credential=ID/date/region/service/aws4_request, SignedHeaders=a;b, Signature=hex".
func parseAuthorization(r *http.Request) (sigv4, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return sigv4{}, errors.New("missing Authentication Token")
	}
	alg, rest, ok := strings.Cut(h, " ")
	if !ok {
		return sigv4{}, errors.New("malformed Authorization header")
	}
	a := sigv4{algorithm: alg}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			if err := a.setCredential(v); err != nil {
				return sigv4{}, err
			}
		case "SignedHeaders":
			a.signedHeaders = strings.Split(v, ";")
		case "Signature":
			a.signature = v
		}
	}
	if a.credential == "" || len(a.signedHeaders) == 0 || a.signature == "" {
		return sigv4{}, errors.New("Authorization header requires Credential, SignedHeaders and Signature")
	}
	t, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return sigv4{}, errors.New("missing or malformed X-Amz-Date header")
	}
	a.amzDate = t
	return a, nil
}

func (a *sigv4) setCredential(v string) error {
	parts := strings.Split(v, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" {
		return fmt.Errorf("malformed credential scope %q", v)
	}
	a.credential, a.date, a.region, a.service = parts[0], parts[1], parts[2], parts[3]
	return nil
}

// checkTime refuses a signature made too far from now, or whose scope date is not its date.
func (a sigv4) checkTime(now time.Time) error {
	if a.amzDate.Format(shortDate) != a.date {
		return errors.New("the credential scope date does not match X-Amz-Date")
	}
	if d := now.Sub(a.amzDate); d > maxClockSkew || d < -maxClockSkew {
		return fmt.Errorf("Signature expired: %s is now earlier than %s", a.amzDate.Format(amzDateFormat), now.Add(-maxClockSkew).UTC().Format(amzDateFormat))
	}
	return nil
}

// canonicalRequest builds the SigV4 canonical request of r over the given headers, query and
// payload hash.
func canonicalRequest(r *http.Request, path string, query url.Values, signedHeaders []string, payloadHash string) (string, error) {
	var hdr strings.Builder
	for _, name := range signedHeaders {
		var vals []string
		switch name {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			vals = r.Header.Values(name)
			if len(vals) == 0 {
				return "", fmt.Errorf("signed header %s is missing", name)
			}
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		hdr.WriteString(name + ":" + strings.Join(vals, ",") + "\n")
	}
	return strings.Join([]string{
		r.Method,
		escapePath(path),
		canonicalQuery(query),
		hdr.String(),
		strings.Join(signedHeaders, ";"),
		payloadHash,
	}, "\n"), nil
}

func canonicalQuery(q url.Values) string {
	type kv struct{ k, v string }
	var pairs []kv
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, kv{uriEscape(k), uriEscape(v)})
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	s := make([]string, len(pairs))
	for i, p := range pairs {
		s[i] = p.k + "=" + p.v
	}
	return strings.Join(s, "&")
}

// uriEscape encodes every byte but the RFC 3986 unreserved characters, as SigV4 requires.
func uriEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func escapePath(p string) string {
	if p == "" {
		return "/"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = uriEscape(s)
	}
	return strings.Join(segs, "/")
}

func stringToSign(algorithm string, amzDate time.Time, scope, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return algorithm + "\n" + amzDate.UTC().Format(amzDateFormat) + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// hmacSignature is the SigV4 HMAC signature of sts with the secret key.
func hmacSignature(secret string, a sigv4, sts string) string {
	k := hmacSHA256([]byte("AWS4"+secret), a.date)
	k = hmacSHA256(k, a.region)
	k = hmacSHA256(k, a.service)
	k = hmacSHA256(k, "aws4_request")
	return hex.EncodeToString(hmacSHA256(k, sts))
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
