package gatehouse_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/gatehousedb/gatehouse"

// Layers, from DESIGN.md: imports point down. root → core → adapters → wiring → cli → cmd.
// A package may import packages of a lower layer only, with the exceptions listed below.
func layer(pkg string) (int, bool) {
	switch {
	case pkg == "", pkg == "internal/rawio": // standard library only
		return 0, true
	case pkg == "internal/policy", pkg == "internal/token", pkg == "internal/activity",
		pkg == "internal/secret", pkg == "internal/proxy", pkg == "internal/syncapi":
		return 1, true
	case strings.HasPrefix(pkg, "internal/proxy/"), strings.HasPrefix(pkg, "internal/secret/"),
		strings.HasPrefix(pkg, "internal/sqlparse"), pkg == "internal/store", pkg == "internal/api", pkg == "internal/scim",
		pkg == "internal/auth", pkg == "internal/web", pkg == "internal/pgserver", pkg == "internal/mysqlserver",
		pkg == "internal/mysqlpeer", pkg == "internal/activity/activitytest":
		return 2, true
	case pkg == "internal/controlplane", pkg == "internal/sidecar":
		return 3, true
	case pkg == "internal/cli":
		return 4, true
	case strings.HasPrefix(pkg, "cmd/"):
		return 5, true
	}
	return 0, false
}

// Adapter-to-adapter imports that are allowed, and why.
var allowed = map[[2]string]string{
	{"internal/api", "internal/auth"}:                         "the API authenticates requests with the auth package's sessions and sidecar JWTs",
	{"internal/api", "internal/web"}:                          "the API mounts the console's handler next to its routes",
	{"internal/secret", "internal/proxy"}:                     "the resolver implements proxy.Credentials for a proxy.Target",
	{"internal/proxy/mysql", "internal/proxy/mysql/protocol"}: "the MySQL engine's pure codec child package",
}

// Third-party modules that may appear in one place only, so that each SDK has one home.
var sdkHome = map[string][]string{
	"modernc.org/sqlite":                             {"internal/store"},
	"github.com/aws/aws-sdk-go-v2":                   {"internal/secret/aws"},
	"github.com/aws/rolesanywhere-credential-helper": {"internal/secret/aws"},
	"github.com/Azure/azure-sdk-for-go":              {"internal/secret/azure"},
	"github.com/pganalyze/pg_query_go":               {"internal/sqlparse/postgres"},
	"github.com/pingcap/tidb/pkg/parser":             {"internal/sqlparse/mysql"},
	"github.com/spf13/cobra":                         {"internal/cli"},
	"github.com/coreos/go-oidc":                      {"internal/auth"},
	"github.com/dolthub/go-mysql-server":             {"internal/mysqlpeer"},
	"github.com/dolthub/vitess":                      {"internal/mysqlpeer"},
}

func TestLayering(t *testing.T) {
	imports := map[string]map[string]bool{} // package dir -> imports
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "node_modules" || strings.HasPrefix(name, "gatehouse-data")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		if dir == "." {
			dir = ""
		}
		if imports[dir] == nil {
			imports[dir] = map[string]bool{}
		}
		for _, imp := range f.Imports {
			imports[dir][strings.Trim(imp.Path.Value, `"`)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) < 2 {
		t.Fatalf("found only %d packages; is the test running at the module root?", len(imports))
	}

	var problems []string
	for pkg, imps := range imports {
		from, known := layer(pkg)
		if !known && !strings.HasPrefix(pkg, "e2e") && !strings.HasPrefix(pkg, "bench") {
			problems = append(problems, pkg+": package is not placed in a layer; add it to layer() in layering_test.go")
			continue
		}
		for imp := range imps {
			for sdk, homes := range sdkHome {
				if (imp == sdk || strings.HasPrefix(imp, sdk+"/")) && !inHome(pkg, homes) {
					problems = append(problems, pkg+" imports "+imp+"; that SDK belongs in "+strings.Join(homes, ", "))
				}
			}
			if !strings.HasPrefix(imp, module) {
				if pkg == "" && strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
					problems = append(problems, "root package imports "+imp+"; it may use the standard library only")
				}
				continue
			}
			dep := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			to, ok := layer(dep)
			if !ok || !known {
				continue
			}
			if to < from {
				continue
			}
			if _, ok := allowed[[2]string{pkg, dep}]; ok {
				continue
			}
			problems = append(problems, pkg+" (layer "+itoa(from)+") imports "+dep+" (layer "+itoa(to)+"); imports must point down")
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

func inHome(pkg string, homes []string) bool {
	for _, h := range homes {
		if pkg == h || strings.HasPrefix(pkg, h+"/") {
			return true
		}
	}
	return false
}

func itoa(i int) string { return string(rune('0' + i)) }
