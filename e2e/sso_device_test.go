package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Device sign-in (RFC 8628): gatehouse login --sso --device through the control plane and the
// real OP, with the test as the person who opens the verification URI on another device.

var devicePrompt = regexp.MustCompile(`Open (\S+) in a browser on any device and enter the code (\S+)`)

// cliDeviceLogin runs gatehouse login with args as c, with env added to its environment; once it
// prints the verification URI and user code, person (when not nil) acts on them. It returns the
// command's result when it ends.
func cliDeviceLogin(t *testing.T, c *CLI, env []string, person func(uri, code string), args ...string) Result {
	t.Helper()
	cmd := exec.Command(Binary, append([]string{"login", "--server", c.Server}, args...)...)
	cmd.Env = append(append(baseEnv(), "GATEHOUSE_CONFIG_DIR="+c.ConfigDir), env...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var uri, code string
	waitUntil(t, 20*time.Second, "gatehouse login prints the verification URI and code", func() bool {
		m := devicePrompt.FindStringSubmatch(stderr.String())
		if m == nil {
			select {
			case err := <-done: // ended without a prompt: give its output
				done <- err
				return true
			default:
			}
			return false
		}
		uri, code = m[1], m[2]
		return true
	})
	if uri != "" && person != nil {
		person(uri, code)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		err = <-done
		t.Errorf("gatehouse login did not end:\n%s", stderr.String())
	}
	res := Result{Args: append([]string{"login"}, args...), Stdout: stdout.String(), Stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

// approveAs returns the person who signs in at the OP as username and answers action.
func approveAs(t *testing.T, username, action string) func(uri, code string) {
	return func(uri, code string) { newBrowser(t).approveDevice(t, uri, code, username, action) }
}

func TestSSODeviceLogin(t *testing.T) {
	t.Parallel()
	f := newSSOFixture(t)
	base := f.cp.URL

	alice := f.cp.NewCLI(t)
	res := cliDeviceLogin(t, alice, nil, approveAs(t, "alice", "allowed"), "--sso", "--device")
	if res.Code != 0 || !strings.Contains(res.Stdout, "Logged in to "+base+" as alice@example.com") {
		t.Fatalf("gatehouse login --sso --device: %s", res)
	}
	if !strings.Contains(res.Stderr, "user_code=") {
		t.Errorf("the CLI did not offer the verification URI with the code in it:\n%s", res.Stderr)
	}
	sess := readSession(t, alice)
	if sess.RefreshToken == "" || sess.Username != "alice@example.com" {
		t.Errorf("stored session: user %q, refresh token set %v", sess.Username, sess.RefreshToken != "")
	}
	who := alice.MustRun("whoami")
	if !strings.Contains(who, "alice@example.com") || !strings.Contains(who, "DATA_CONSUMER") || !strings.Contains(who, "analysts") {
		t.Errorf("whoami after device login:\n%s", who)
	}

	// Without --device, on a machine with no display (an SSH session on a server), the CLI
	// chooses the device grant itself.
	root := f.cp.NewCLI(t)
	headless := []string{"DISPLAY=", "WAYLAND_DISPLAY=", "SSH_CONNECTION=192.0.2.1 50000 192.0.2.2 22"}
	res = cliDeviceLogin(t, root, headless, approveAs(t, "root", "allowed"), "--sso")
	if res.Code != 0 || !strings.Contains(res.Stderr, "No browser on this machine") || !strings.Contains(res.Stdout, "as root@example.com") {
		t.Fatalf("gatehouse login --sso without a display: %s", res)
	}
	if who := root.MustRun("whoami"); !strings.Contains(who, "ADMIN") {
		t.Errorf("whoami of root after device login:\n%s", who)
	}
	rootSess := readSession(t, root)
	root.MustRun("logout")

	// No IdP device code, session or refresh token in the control plane's log or the CLI's output.
	codes := f.op.issuedDeviceCodes()
	if len(codes) != 2 {
		t.Errorf("the OP issued %d device codes, want 2", len(codes))
	}
	for _, secret := range append(codes, sess.Token, sess.RefreshToken, rootSess.Token, rootSess.RefreshToken, opClientSecret) {
		if strings.Contains(f.cp.Output(), secret) {
			t.Errorf("the server log holds a secret (%.6s...)", secret)
		}
		if strings.Contains(res.Stderr+res.Stdout, secret) {
			t.Errorf("the CLI printed a secret (%.6s...)", secret)
		}
	}
}

func TestSSODeviceRefusals(t *testing.T) {
	t.Parallel()
	f := newSSOFixture(t)
	base := f.cp.URL

	t.Run("denied", func(t *testing.T) {
		t.Parallel()
		c := f.cp.NewCLI(t)
		res := cliDeviceLogin(t, c, nil, approveAs(t, "alice", "denied"), "--sso", "--device")
		if res.Code != 1 || !strings.Contains(res.Stderr, "the sign-in was denied at the identity provider") {
			t.Errorf("denied device login: %s", res)
		}
		if r := c.Run("whoami"); r.Code == 0 {
			t.Errorf("whoami after a denied login: %s", r)
		}
	})
	t.Run("not assigned", func(t *testing.T) {
		t.Parallel()
		res := cliDeviceLogin(t, f.cp.NewCLI(t), nil, approveAs(t, "bob", "allowed"), "--sso", "--device")
		if res.Code != 1 || !strings.Contains(res.Stderr, "bob@example.com is not assigned to Gatehouse") {
			t.Errorf("device login of an unassigned user: %s", res)
		}
	})
	t.Run("other domain", func(t *testing.T) {
		t.Parallel()
		res := cliDeviceLogin(t, f.cp.NewCLI(t), nil, approveAs(t, "eve", "allowed"), "--sso", "--device")
		if res.Code != 1 || !strings.Contains(res.Stderr, `domain "elsewhere.org" is not allowed`) {
			t.Errorf("device login from another e-mail domain: %s", res)
		}
	})
	t.Run("polling", func(t *testing.T) {
		t.Parallel()
		post := func(path, body string) (int, map[string]any) {
			t.Helper()
			resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			json.NewDecoder(resp.Body).Decode(&out)
			return resp.StatusCode, out
		}
		code, start := post("/api/v1/sso/device", "{}")
		id, _ := start["device_id"].(string)
		if code != 200 || !strings.HasPrefix(id, "ghd_") || start["user_code"] == "" || start["interval"] != float64(5) || start["expires_in"] != float64(300) {
			t.Fatalf("POST /api/v1/sso/device: %d %v", code, start)
		}
		if _, ok := start["device_code"]; ok {
			t.Errorf("the IdP's device code left the control plane: %v", start)
		}
		time.Sleep(5 * time.Second)
		if code, out := post("/api/v1/sso/device/poll", `{"device_id":"`+id+`"}`); code != 200 || out["status"] != "pending" || out["interval"] != float64(5) {
			t.Errorf("first poll: %d %v", code, out)
		}
		// Too soon: slow_down from the control plane, without asking the IdP.
		if code, out := post("/api/v1/sso/device/poll", `{"device_id":"`+id+`"}`); code != 200 || out["status"] != "slow_down" || out["interval"] != float64(10) {
			t.Errorf("poll too soon: %d %v", code, out)
		}
		if code, out := post("/api/v1/sso/device/poll", `{"device_id":"ghd_unknown"}`); code != http.StatusUnauthorized {
			t.Errorf("poll of an unknown device_id: %d %v", code, out)
		}
		if code, out := post("/api/v1/sso/device/poll", `{}`); code != http.StatusBadRequest {
			t.Errorf("poll without device_id: %d %v", code, out)
		}
		if strings.Contains(f.cp.Output(), id) || strings.Contains(f.cp.Output(), start["user_code"].(string)) {
			t.Errorf("the server log holds the device_id or user code")
		}
	})
}

func TestSSODeviceExpired(t *testing.T) {
	t.Parallel()
	f := newSSOFixture(t)
	f.op.deviceTTL.Store(int64(time.Second))
	res := cliDeviceLogin(t, f.cp.NewCLI(t), nil, nil, "--sso", "--device")
	if res.Code != 1 || !strings.Contains(res.Stderr, "the code expired before the sign-in was approved") {
		t.Errorf("device login with a code that expired: %s", res)
	}

	// The CLI's own limit: --timeout shorter than the code's lifetime.
	f.op.deviceTTL.Store(0)
	res = cliDeviceLogin(t, f.cp.NewCLI(t), nil, nil, "--sso", "--device", "--timeout", "2s")
	if res.Code != 1 || !strings.Contains(res.Stderr, "no sign-in within 2s") {
		t.Errorf("device login past --timeout: %s", res)
	}

	// An expired ID token from the device grant is refused like the browser flow's.
	f.op.expired.Store(true)
	res = cliDeviceLogin(t, f.cp.NewCLI(t), nil, approveAs(t, "alice", "allowed"), "--sso", "--device")
	if res.Code != 1 || !strings.Contains(res.Stderr, "ID token expired") {
		t.Errorf("device login with an expired ID token: %s", res)
	}
}

func TestSSODeviceUnsupported(t *testing.T) {
	t.Parallel()
	f := newSSOFixture(t)
	f.op.noDevice.Store(true)
	res := cliDeviceLogin(t, f.cp.NewCLI(t), nil, nil, "--sso", "--device")
	if res.Code != 1 || !strings.Contains(res.Stderr, "does not support the device authorization grant") || !strings.Contains(res.Stderr, "--no-browser") {
		t.Errorf("--device with an IdP without a device endpoint: %s", res)
	}
	// Without --device on a headless machine, the CLI falls back to the loopback redirect.
	c := f.cp.NewCLI(t)
	cmd := exec.Command(Binary, "login", "--server", c.Server, "--sso", "--timeout", "3s")
	cmd.Env = append(baseEnv(), "GATEHOUSE_CONFIG_DIR="+c.ConfigDir, "DISPLAY=", "WAYLAND_DISPLAY=")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "Open this URL in a browser to sign in: "+c.Server+"/api/v1/sso/login?") {
		t.Errorf("headless login --sso with an IdP without a device endpoint:\n%s", out)
	}
}
