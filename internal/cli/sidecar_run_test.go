package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse/internal/sidecar"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

func TestSidecarRunSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	yamlFile := write("sidecar.yaml", `
control_plane: https://file.example.com
sidecar_id: from-file
private_key: /file/private.pem
listen_host: 10.0.0.1
allow_plaintext_passwords: true
report_interval: 2s
`)
	jsonFile := write("sidecar.json", `{"control_plane": "https://json.example.com", "sidecar_id": "json-id", "private_key": "/json/key.pem"}`)
	badKey := write("bad.yaml", "control_plane: https://x\nprivate_kye: /k.pem\n")
	notYAML := write("broken.yaml", "control_plane: [\n")

	type got struct {
		ControlPlane, SidecarID, PrivateKeyFile, ListenHost string
		AllowPlaintextPasswords                             bool
		ReportInterval                                      time.Duration
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    got
		wantErr string
	}{
		{"flags", []string{"--control-plane", "https://flag.example.com", "--sidecar-id", "f", "--private-key", "/f.pem"}, nil,
			got{"https://flag.example.com", "f", "/f.pem", "", false, 0}, ""},
		{"environment", nil, map[string]string{"GATEHOUSE_CONTROL_PLANE": "https://env.example.com", "GATEHOUSE_SIDECAR_ID": "e", "GATEHOUSE_PRIVATE_KEY": "/e.pem", "GATEHOUSE_ALLOW_PLAINTEXT_PASSWORDS": "true", "GATEHOUSE_REPORT_INTERVAL": "1s"},
			got{"https://env.example.com", "e", "/e.pem", "", true, time.Second}, ""},
		{"yaml file", []string{"--config", yamlFile}, nil,
			got{"https://file.example.com", "from-file", "/file/private.pem", "10.0.0.1", true, 2 * time.Second}, ""},
		{"json file from the environment", nil, map[string]string{"GATEHOUSE_CONFIG": jsonFile},
			got{"https://json.example.com", "json-id", "/json/key.pem", "", false, 0}, ""},
		{"flag over environment over file", []string{"--config", yamlFile, "--sidecar-id", "flag-id", "--allow-plaintext-passwords=false"},
			map[string]string{"GATEHOUSE_SIDECAR_ID": "env-id", "GATEHOUSE_PRIVATE_KEY": "/env.pem"},
			got{"https://file.example.com", "flag-id", "/env.pem", "10.0.0.1", false, 2 * time.Second}, ""},
		{"unknown key", []string{"--config", badKey}, nil, got{}, `line 2: unknown key "private_kye"`},
		{"broken file", []string{"--config", notYAML}, nil, got{}, "config file " + notYAML},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, got{}, "read config file"},
		{"bad boolean", nil, map[string]string{"GATEHOUSE_ALLOW_PLAINTEXT_PASSWORDS": "maybe"}, got{}, "must be true or false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ok := resolveSidecarSettings(t, tc.args, tc.env, tc.wantErr)
			if !ok {
				return
			}
			g := got{cfg.ControlPlane, cfg.SidecarID, cfg.PrivateKeyFile, cfg.ListenHost, cfg.AllowPlaintextPasswords, cfg.ReportInterval}
			if diff := cmp.Diff(tc.want, g); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSidecarKeygen(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(t.TempDir(), "keys")
	out := h.mustRun("", "sidecar", "keygen", "--out", dir)
	if !strings.Contains(out, filepath.Join(dir, "public.pem")) {
		t.Errorf("keygen output does not name the public key:\n%s", out)
	}
	if _, err := syncapi.LoadPrivateKey(filepath.Join(dir, "private.pem")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "private.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private.pem: %v, mode %v", err, fi.Mode())
	}
	_, stderr, code := h.run("", "sidecar", "keygen", "--out", dir)
	if code != ExitError || !strings.Contains(stderr, "refusing to overwrite") {
		t.Errorf("second keygen: exit %d, %s", code, stderr)
	}
	if _, stderr, code := h.run("", "sidecar", "keygen"); code != ExitUsage || !strings.Contains(stderr, "--out") {
		t.Errorf("keygen without --out: exit %d, %s", code, stderr)
	}
}

func TestSidecarRunUsage(t *testing.T) {
	h := newHarness(t)
	out := h.mustRun("", "sidecar")
	if !strings.Contains(out, "--control-plane") {
		t.Errorf("bare `gatehouse sidecar` does not show help:\n%s", out)
	}
	_, stderr, code := h.run("", "sidecar", "--control-plane", "https://x.example.com")
	if code != ExitUsage || !strings.Contains(stderr, "--sidecar-id, --private-key") {
		t.Errorf("partial settings: exit %d, %s", code, stderr)
	}
	_, stderr, code = h.run("", "sidecar", "--control-plane", "https://x.example.com", "--sidecar-id", "a", "--private-key", "/nonexistent.pem")
	if code != ExitError || !strings.Contains(stderr, "read private key") {
		t.Errorf("missing key file: exit %d, %s", code, stderr)
	}
}

func TestSidecarParkIdleAfter(t *testing.T) {
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "sidecar.yaml")
	if err := os.WriteFile(yamlFile, []byte("park_idle_after: 250ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    time.Duration // sidecar.Config.ParkIdleAfter: 0 default, negative never
		wantErr string
	}{
		{"default", nil, nil, 0, ""},
		{"flag", []string{"--park-idle-after", "5s"}, nil, 5 * time.Second, ""},
		{"flag 0 never parks", []string{"--park-idle-after", "0"}, nil, -1, ""},
		{"environment", nil, map[string]string{"GATEHOUSE_PARK_IDLE_AFTER": "0s"}, -1, ""},
		{"file", []string{"--config", yamlFile}, nil, 250 * time.Millisecond, ""},
		{"flag over environment over file", []string{"--config", yamlFile, "--park-idle-after", "2s"},
			map[string]string{"GATEHOUSE_PARK_IDLE_AFTER": "3s"}, 2 * time.Second, ""},
		{"environment over file", []string{"--config", yamlFile}, map[string]string{"GATEHOUSE_PARK_IDLE_AFTER": "3s"}, 3 * time.Second, ""},
		{"not a duration", nil, map[string]string{"GATEHOUSE_PARK_IDLE_AFTER": "soon"}, 0, `not "soon"`},
		{"negative", []string{"--park-idle-after", "-1s"}, nil, 0, "0 (never park) or a positive duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ok := resolveSidecarSettings(t, tc.args, tc.env, tc.wantErr)
			if !ok {
				return
			}
			if cfg.ParkIdleAfter != tc.want {
				t.Errorf("ParkIdleAfter = %v, want %v", cfg.ParkIdleAfter, tc.want)
			}
		})
	}
}

// resolveSidecarSettings resolves `gatehouse sidecar` settings from args and env as the command
// does. With wantErr it checks that resolving fails with it and reports false; otherwise it
// returns the configuration.
func resolveSidecarSettings(t *testing.T, args []string, environ map[string]string, wantErr string) (sidecar.Config, bool) {
	t.Helper()
	e := &env{Options: Options{Stderr: os.Stderr, Getenv: func(k string) string { return environ[k] }}, logLevel: "error"}
	cmd := &cobra.Command{}
	var f sidecarRunFlags
	f.add(cmd)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.resolve(e, cmd)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("resolve = %v; want an error containing %q", err, wantErr)
		}
		return sidecar.Config{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return cfg, true
}
