package gatehouse

import (
	"strconv"
	"strings"
)

// DatabaseType is the kind of database a repository or listener port speaks.
type DatabaseType string

// Database types.
const (
	PostgreSQL DatabaseType = "postgresql"
	MySQL      DatabaseType = "mysql"
	SQLServer  DatabaseType = "sqlserver"
	Oracle     DatabaseType = "oracle"
)

// DatabaseTypes lists every supported type, in the order the docs and forms show them.
var DatabaseTypes = []DatabaseType{PostgreSQL, MySQL, SQLServer, Oracle}

// Validate reports whether t is a supported database type.
func (t DatabaseType) Validate(field string) error {
	for _, k := range DatabaseTypes {
		if t == k {
			return nil
		}
	}
	return Invalid(field, "must be one of postgresql, mysql, sqlserver, oracle")
}

// DefaultPort returns the database's usual TCP port.
func (t DatabaseType) DefaultPort() int {
	switch t {
	case PostgreSQL:
		return 5432
	case MySQL:
		return 3306
	case SQLServer:
		return 1433
	case Oracle:
		return 1521
	}
	return 0
}

// ValidateVersion checks a database version string: dot-separated numbers, the first one required
// ("15", "8.0", "19.3", "15.0.2000.5").
func ValidateVersion(field, v string) error {
	if v == "" {
		return Invalid(field, "is required (for example \"15\" or \"8.0\")")
	}
	for _, p := range strings.Split(v, ".") {
		if p == "" || len(p) > 6 {
			return Invalid(field, "must be dot-separated numbers, like \"15\" or \"8.0\"")
		}
		if _, err := strconv.Atoi(p); err != nil {
			return Invalid(field, "must be dot-separated numbers, like \"15\" or \"8.0\"")
		}
	}
	return nil
}

// MajorVersion returns the first component of a version ("15" of "15.4").
func MajorVersion(v string) string {
	major, _, _ := strings.Cut(v, ".")
	return major
}

// CompatibleVersions reports whether a listener port presenting portVersion may front a repository
// running repoVersion. The rule, per type:
//   - PostgreSQL, SQL Server, Oracle: the same major version;
//   - MySQL: the same major and minor version (8.0 clients and 8.4 servers differ in their handshake).
//
// It returns a message naming the rule when they are not compatible.
func CompatibleVersions(t DatabaseType, portVersion, repoVersion string) (ok bool, rule string) {
	pv, rv := strings.Split(portVersion, "."), strings.Split(repoVersion, ".")
	if t == MySQL {
		pm, rm := pv[0]+"."+elem(pv, 1, "0"), rv[0]+"."+elem(rv, 1, "0")
		if pm != rm {
			return false, "mysql listener ports must present the repository's major.minor version (port " + pm + ", repository " + rm + ")"
		}
		return true, ""
	}
	if pv[0] != rv[0] {
		return false, string(t) + " listener ports must present the repository's major version (port " + pv[0] + ", repository " + rv[0] + ")"
	}
	return true, ""
}

func elem(s []string, i int, def string) string {
	if i < len(s) {
		return s[i]
	}
	return def
}

// ValidateHostname checks an RFC 1123 host name (or an IPv4/IPv6 literal): no scheme, no path, no port.
func ValidateHostname(field, h string) error {
	if h == "" {
		return Invalid(field, "is required")
	}
	if strings.Contains(h, "://") {
		return Invalid(field, "must be a host name without a scheme (use %q, not %q)", h[strings.Index(h, "://")+3:], h)
	}
	if isIPLiteral(h) {
		return nil
	}
	if len(h) > 253 {
		return Invalid(field, "must be at most 253 characters")
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return Invalid(field, "must be an RFC 1123 host name: dot-separated labels of 1 to 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return Invalid(field, "must be an RFC 1123 host name: labels may not start or end with '-'")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return Invalid(field, "must be an RFC 1123 host name: letters, digits, '-' and '.' only (%q is not allowed)", string(c))
			}
		}
	}
	return nil
}

func isIPLiteral(h string) bool {
	if strings.Count(h, ":") >= 2 { // IPv6
		for _, c := range h {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		return true
	}
	parts := strings.Split(h, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 || p == "" {
			return false
		}
	}
	return true
}

// ValidatePort checks a TCP port number.
func ValidatePort(field string, p int) error {
	if p < 1 || p > 65535 {
		return Invalid(field, "must be a TCP port between 1 and 65535")
	}
	return nil
}

// ValidateName checks an object name: 1 to 63 lowercase letters, digits, '_' or '-', starting with a
// letter or digit.
func ValidateName(field, name string) error {
	if name == "" {
		return Invalid(field, "is required")
	}
	if len(name) > 63 {
		return Invalid(field, "must be at most 63 characters")
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (i > 0 && (c == '_' || c == '-'))
		if !ok {
			return Invalid(field, "must be lowercase letters, digits, _ or - (no spaces), starting with a letter or digit")
		}
	}
	return nil
}
