package azureemu_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse/internal/secret/azure/azureemu"
)

// TestKeyVaultAuth checks the vault's side of the bearer challenge without the SDK: no token is a
// challenge, a token from elsewhere or for another resource is refused, and only a granted
// principal reads the secret.
func TestKeyVaultAuth(t *testing.T) {
	emu := azureemu.New()
	emu.Start()
	defer emu.Close()
	emu.AddApp("app", "s3cret")
	emu.AddApp("other", "s3cret2")
	emu.Grant("app", "db-*")
	emu.SetSecret("db-password", "value")
	c := emu.Client()

	token := func(id, secret, scope string) string {
		t.Helper()
		resp, err := c.PostForm(emu.URL()+"/"+emu.TenantID+"/oauth2/v2.0/token", url.Values{
			"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {scope},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&out)
		return out.AccessToken
	}
	get := func(bearer string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, emu.URL()+"/secrets/db-password/?api-version=7.6", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Value string `json:"value"`
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Error.Code, resp.Header.Get("WWW-Authenticate")
	}

	status, _, challenge := get("")
	if status != http.StatusUnauthorized || !strings.Contains(challenge, `authorization="https://login.microsoftonline.com/`+emu.TenantID+`"`) ||
		!strings.Contains(challenge, `resource="https://vault.azure.net"`) {
		t.Errorf("no token: status %d, challenge %q", status, challenge)
	}
	if tok := token("app", "wrong", "https://vault.azure.net/.default"); tok != "" {
		t.Error("token issued for a wrong client secret")
	}
	if status, _, _ := get("eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.forged"); status != http.StatusUnauthorized {
		t.Errorf("forged token: status %d", status)
	}
	if status, _, _ := get(token("app", "s3cret", azureemu.OSSRDBMSResource+"/.default")); status != http.StatusUnauthorized {
		t.Errorf("token for another resource: status %d", status)
	}
	if status, code, _ := get(token("other", "s3cret2", "https://vault.azure.net/.default")); status != http.StatusForbidden || code != "Forbidden" {
		t.Errorf("principal without the role: status %d code %s", status, code)
	}
	if status, code, _ := get(token("app", "s3cret", "https://vault.azure.net/.default")); status != http.StatusOK {
		t.Errorf("granted principal: status %d code %s", status, code)
	}
}
