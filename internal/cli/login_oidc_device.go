package cli

import (
	"context"
	"fmt"
	"time"
)

// SSODevicePrompt is the line gatehouse login --sso --device prints (verification URI, user
// code); scripts and the e2e tests look for it.
const SSODevicePrompt = "Open %s in a browser on any device and enter the code %s\n"

type deviceStart struct {
	DeviceID                string `json:"device_id"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

type devicePoll struct {
	Status   string `json:"status"` // pending, slow_down or complete
	Interval int    `json:"interval"`
	ssoTokens
}

// loginDevice signs in with the device authorization grant (RFC 8628) through the control plane:
// it asks the control plane to start a device sign-in at the IdP, shows the verification URI and
// user code, and polls until the person has approved it somewhere else, the code expires, or
// timeout (when not 0) passes. The device_id it polls with is a secret and is never printed.
func (e *env) loginDevice(ctx context.Context, server string, timeout time.Duration) error {
	c := newClient(server)
	raw, err := c.post(ctx, path("sso", "device"), map[string]string{})
	if err != nil {
		return err
	}
	d, err := decode[deviceStart](raw)
	if err != nil {
		return err
	}
	if d.DeviceID == "" || d.UserCode == "" || d.VerificationURI == "" {
		return fmt.Errorf("the control plane at %s started a device sign-in without a code or URL", server)
	}
	lifetime := time.Duration(d.ExpiresIn) * time.Second
	if lifetime <= 0 {
		lifetime = 5 * time.Minute
	}
	if timeout <= 0 || timeout > lifetime {
		timeout = lifetime
	}
	fmt.Fprintf(e.Stderr, SSODevicePrompt, d.VerificationURI, d.UserCode)
	if d.VerificationURIComplete != "" && d.VerificationURIComplete != d.VerificationURI {
		fmt.Fprintf(e.Stderr, "(or open %s, which has the code in it)\n", d.VerificationURIComplete)
	}
	fmt.Fprintf(e.Stderr, "Waiting for you to sign in (the code expires in %s)...\n", lifetime.Round(time.Second))

	interval := max(time.Duration(d.Interval)*time.Second, time.Second)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		wait := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			wait.Stop()
			return ctx.Err()
		case <-deadline.C:
			wait.Stop()
			if timeout < lifetime {
				return fmt.Errorf("no sign-in within %s; run gatehouse login --sso --device again", timeout)
			}
			return fmt.Errorf("the code %s expired before the sign-in was approved; run gatehouse login --sso --device again", d.UserCode)
		case <-wait.C:
		}
		raw, err := c.post(ctx, path("sso", "device", "poll"), map[string]string{"device_id": d.DeviceID})
		if err != nil {
			return err
		}
		p, err := decode[devicePoll](raw)
		if err != nil {
			return err
		}
		switch p.Status {
		case "pending":
		case "slow_down":
			interval = max(time.Duration(p.Interval)*time.Second, interval+5*time.Second)
		case "complete":
			if p.Token == "" {
				return fmt.Errorf("the control plane at %s finished the sign-in without a session", server)
			}
			return e.ssoLoggedIn(server, &p.ssoTokens)
		default:
			return fmt.Errorf("the control plane at %s answered the poll with status %q", server, p.Status)
		}
	}
}
