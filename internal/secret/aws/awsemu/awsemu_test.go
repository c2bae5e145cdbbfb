package awsemu_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/gatehousedb/gatehouse/internal/secret/aws/awsemu"
)

const arn = "arn:aws:secretsmanager:us-east-2:111111111111:secret:prod-db-KkAAcC"

// TestSignatureChecks signs requests with the SDK's SigV4 signer, then breaks them the ways an
// attacker or a bug would, and expects the emulator to refuse each as Secrets Manager does.
func TestSignatureChecks(t *testing.T) {
	emu := awsemu.New()
	emu.Start()
	defer emu.Close()
	user := emu.AddUser("sidecar", "AKIATEST", "secret-key")
	emu.Allow(user, arn)
	emu.PutSecretString(arn, "value")
	role := awsemu.RoleARN("r")
	emu.Allow(role, arn)
	temp := emu.IssueRoleCredentials(role, time.Hour)
	emu.AddTemporaryKey(role, "ASIAEXPIRED", "s", "tok", time.Now().Add(-time.Minute))

	body := []byte(`{"SecretId":"` + arn + `"}`)
	static := awssdk.Credentials{AccessKeyID: "AKIATEST", SecretAccessKey: "secret-key"}
	tests := []struct {
		name     string
		creds    awssdk.Credentials
		service  string
		region   string
		at       time.Time
		tamper   func(r *http.Request)
		wantCode string
	}{
		{name: "valid", creds: static, wantCode: ""},
		{name: "valid temporary", creds: awssdk.Credentials{AccessKeyID: temp.AccessKeyID, SecretAccessKey: temp.SecretAccessKey, SessionToken: temp.SessionToken}},
		{name: "body changed after signing", creds: static, tamper: func(r *http.Request) {
			b := []byte(`{"SecretId":"arn:aws:secretsmanager:us-east-2:111111111111:secret:other-AbCdEf"}`)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}, wantCode: "InvalidSignatureException"},
		{name: "signed header changed", creds: static, tamper: func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-amz-json-1.0")
		}, wantCode: "InvalidSignatureException"},
		{name: "wrong secret key", creds: awssdk.Credentials{AccessKeyID: "AKIATEST", SecretAccessKey: "guess"}, wantCode: "InvalidSignatureException"},
		{name: "unknown key", creds: awssdk.Credentials{AccessKeyID: "AKIANOPE", SecretAccessKey: "x"}, wantCode: "UnrecognizedClientException"},
		{name: "session token missing", creds: awssdk.Credentials{AccessKeyID: temp.AccessKeyID, SecretAccessKey: temp.SecretAccessKey}, wantCode: "UnrecognizedClientException"},
		{name: "expired temporary key", creds: awssdk.Credentials{AccessKeyID: "ASIAEXPIRED", SecretAccessKey: "s", SessionToken: "tok"}, wantCode: "ExpiredTokenException"},
		{name: "signed too long ago", creds: static, at: time.Now().Add(-10 * time.Minute), wantCode: "InvalidSignatureException"},
		{name: "other service", creds: static, service: "kms", wantCode: "InvalidSignatureException"},
		{name: "other region", creds: static, region: "us-west-2", wantCode: "ResourceNotFoundException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, region, at := "secretsmanager", "us-east-2", time.Now()
			if tc.service != "" {
				svc = tc.service
			}
			if tc.region != "" {
				region = tc.region
			}
			if !tc.at.IsZero() {
				at = tc.at
			}
			req, _ := http.NewRequest(http.MethodPost, emu.URL()+"/", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
			sum := sha256.Sum256(body)
			if err := v4.NewSigner().SignHTTP(context.Background(), tc.creds, req, hex.EncodeToString(sum[:]), svc, region, at); err != nil {
				t.Fatal(err)
			}
			if tc.tamper != nil {
				tc.tamper(req)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			json.NewDecoder(resp.Body).Decode(&out)
			code, _ := out["__type"].(string)
			if code != tc.wantCode {
				t.Errorf("status %d, code %q (%v), want code %q", resp.StatusCode, code, out["message"], tc.wantCode)
			}
			if tc.wantCode == "" && out["SecretString"] != "value" {
				t.Errorf("valid request did not return the secret: %v", out)
			}
		})
	}
}
