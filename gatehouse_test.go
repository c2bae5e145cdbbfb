package gatehouse_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse"
)

// fieldOf returns the field and code of a validation error, or "" for nil.
func fieldOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	e, ok := err.(*gatehouse.Error)
	if !ok {
		t.Fatalf("error %v is %T, want *gatehouse.Error", err, err)
	}
	if e.Code != gatehouse.ECodeInvalid {
		t.Fatalf("error %v has code %q, want invalid", err, e.Code)
	}
	return e.Field
}

func validRepo() gatehouse.Repository {
	return gatehouse.Repository{Name: "sales", Type: gatehouse.PostgreSQL, Version: "15", Hostname: "db1.example.com", Port: 5432, Database: "postgres", TLSMode: gatehouse.TLSRequire}
}

func TestRepositoryValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *gatehouse.Repository)
		field  string
	}{
		{"valid", func(r *gatehouse.Repository) {}, ""},
		{"ip host", func(r *gatehouse.Repository) { r.Hostname = "10.0.0.7" }, ""},
		{"uppercase name", func(r *gatehouse.Repository) { r.Name = "Sales" }, "name"},
		{"space in name", func(r *gatehouse.Repository) { r.Name = "my sales" }, "name"},
		{"empty name", func(r *gatehouse.Repository) { r.Name = "" }, "name"},
		{"unknown type", func(r *gatehouse.Repository) { r.Type = "db2" }, "type"},
		{"bad version", func(r *gatehouse.Repository) { r.Version = "fifteen" }, "version"},
		{"scheme in host", func(r *gatehouse.Repository) { r.Hostname = "https://db1.example.com" }, "hostname"},
		{"underscore in host", func(r *gatehouse.Repository) { r.Hostname = "db_1.example.com" }, "hostname"},
		{"port in host", func(r *gatehouse.Repository) { r.Hostname = "db1.example.com:5432" }, "hostname"},
		{"port zero", func(r *gatehouse.Repository) { r.Port = 0 }, "port"},
		{"port too big", func(r *gatehouse.Repository) { r.Port = 70000 }, "port"},
		{"tls mode", func(r *gatehouse.Repository) { r.TLSMode = "on" }, "tls_mode"},
		{"ca not pem", func(r *gatehouse.Repository) { r.CABundle = "hello" }, "ca_bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRepo()
			tt.change(&r)
			if got := fieldOf(t, r.Validate()); got != tt.field {
				t.Errorf("field = %q, want %q (err %v)", got, tt.field, r.Validate())
			}
		})
	}
}

func TestSecretRefValidate(t *testing.T) {
	const arn = "arn:aws:secretsmanager:us-east-2:111111111111:secret:username-KkAAcC"
	tests := []struct {
		name  string
		ref   gatehouse.SecretRef
		field string
	}{
		{"aws", gatehouse.SecretRef{Source: "aws-secrets-manager", ARN: arn, JSONPath: "nested.password"}, ""},
		{"aws bad arn", gatehouse.SecretRef{Source: "aws-secrets-manager", ARN: "arn:aws:s3:::bucket"}, "secret.arn"},
		{"aws missing arn", gatehouse.SecretRef{Source: "aws-secrets-manager"}, "secret.arn"},
		{"aws bad path", gatehouse.SecretRef{Source: "aws-secrets-manager", ARN: arn, JSONPath: "a..b"}, "secret.json_path"},
		{"azure", gatehouse.SecretRef{Source: "azure-key-vault", VaultURI: "https://v.vault.azure.net/", SecretName: "prod-user-admin"}, ""},
		{"azure http", gatehouse.SecretRef{Source: "azure-key-vault", VaultURI: "http://v.vault.azure.net/", SecretName: "x"}, "secret.vault_uri"},
		{"azure bad version", gatehouse.SecretRef{Source: "azure-key-vault", VaultURI: "https://v.vault.azure.net", SecretName: "x", Version: "1"}, "secret.version"},
		{"env", gatehouse.SecretRef{Source: "env", Name: "PG_PASSWORD"}, ""},
		{"env bad name", gatehouse.SecretRef{Source: "env", Name: "1PASS"}, "secret.name"},
		{"file relative", gatehouse.SecretRef{Source: "file", Path: "pw.txt"}, "secret.path"},
		{"file", gatehouse.SecretRef{Source: "file", Path: "/run/secrets/pw"}, ""},
		{"rds", gatehouse.SecretRef{Source: "aws-rds-iam"}, ""},
		{"rds region", gatehouse.SecretRef{Source: "aws-rds-iam", Region: "mars"}, "secret.region"},
		{"entra", gatehouse.SecretRef{Source: "azure-entra"}, ""},
		{"field of other source", gatehouse.SecretRef{Source: "env", Name: "X", ARN: arn}, "secret.arn"},
		{"unknown source", gatehouse.SecretRef{Source: "vault"}, "secret.source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fieldOf(t, tt.ref.Validate()); got != tt.field {
				t.Errorf("field = %q, want %q (err %v)", got, tt.field, tt.ref.Validate())
			}
		})
	}
	if got := gatehouse.ARNRegion(arn); got != "us-east-2" {
		t.Errorf("ARNRegion = %q, want us-east-2", got)
	}
}

func pemPublic(t *testing.T, key any, pkcs1 bool) string {
	t.Helper()
	if pkcs1 {
		return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(key.(*rsa.PublicKey))}))
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestParseRSAPublicKey(t *testing.T) {
	k2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	k1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	priv := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k2048)}))
	tests := []struct {
		name, pem, wantErr string
	}{
		{"pkix", pemPublic(t, &k2048.PublicKey, false), ""},
		{"pkcs1", pemPublic(t, &k2048.PublicKey, true), ""},
		{"short", pemPublic(t, &k1024.PublicKey, false), "1024-bit"},
		{"ec", pemPublic(t, &ec.PublicKey, false), "must be an RSA key"},
		{"private", priv, "is a private key"},
		{"garbage", "pUbLic12...Key34", "PEM-encoded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gatehouse.ParseRSAPublicKey(tt.pem)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckBinding(t *testing.T) {
	repo := validRepo()
	tests := []struct {
		name string
		port gatehouse.ListenerPort
		ok   bool
	}{
		{"same", gatehouse.ListenerPort{Port: 15432, Type: "postgresql", Version: "15"}, true},
		{"minor differs", gatehouse.ListenerPort{Port: 15432, Type: "postgresql", Version: "15.4"}, true},
		{"major differs", gatehouse.ListenerPort{Port: 15432, Type: "postgresql", Version: "16"}, false},
		{"type differs", gatehouse.ListenerPort{Port: 13306, Type: "mysql", Version: "15"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := gatehouse.CheckBinding(tt.port, repo)
			if (err == nil) != tt.ok {
				t.Errorf("CheckBinding = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	my := gatehouse.Repository{Name: "m", Type: gatehouse.MySQL, Version: "8.0.36"}
	if err := gatehouse.CheckBinding(gatehouse.ListenerPort{Type: "mysql", Version: "8.4"}, my); err == nil || !strings.Contains(err.Error(), "major.minor") {
		t.Errorf("mysql 8.4 port on 8.0 repository: err = %v, want the major.minor rule", err)
	}
}

func TestImpersonationPolicy(t *testing.T) {
	p := gatehouse.ImpersonationPolicy{Name: "analysts", Repository: "sales", Rules: []gatehouse.ImpersonationRule{
		{Users: []string{"alice@example.com"}, RepositoryUsers: []string{"admin_user"}},
		{Groups: []string{"analysts"}, RepositoryUsers: []string{"reader"}},
	}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if !p.Rules[0].Allows("Alice@Example.com", nil, "admin_user") {
		t.Error("user rule should match case-insensitively")
	}
	if p.Rules[0].Allows("bob@example.com", nil, "admin_user") || p.Rules[0].Allows("alice@example.com", nil, "reader") {
		t.Error("user rule matched the wrong user or repository user")
	}
	if !p.Rules[1].Allows("bob@example.com", []string{"analysts"}, "reader") || p.Rules[1].Allows("bob@example.com", []string{"sales"}, "reader") {
		t.Error("group rule evaluated wrongly")
	}
	p.Rules = append(p.Rules, gatehouse.ImpersonationRule{RepositoryUsers: []string{"x"}})
	if got := fieldOf(t, p.Validate()); got != "rules[2]" {
		t.Errorf("field = %q, want rules[2]", got)
	}
}

func TestCredentialRedacts(t *testing.T) {
	const secret = "s3cr3t-Value!"
	c := gatehouse.NewCredential(secret)
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("fetched", "credential", c)
	logger.Info("fetched", "struct", struct{ C gatehouse.Credential }{c})
	j, _ := json.Marshal(map[string]any{"c": c})
	out := buf.String() + fmt.Sprint(c) + fmt.Sprintf("%v %+v %#v %s", c, c, c, c) + string(j)
	if strings.Contains(out, secret) {
		t.Fatalf("secret leaked: %s", out)
	}
	if c.Reveal() != secret {
		t.Fatal("Reveal lost the value")
	}
}

func TestLooksLikeToken(t *testing.T) {
	for s, want := range map[string]bool{
		"gh1_" + strings.Repeat("a1B", 12): true,
		"gh1_short":                        false,
		"gh2_" + strings.Repeat("a1B", 12): false,
		"gh1_" + strings.Repeat("a-B", 12): false,
		"gh1_" + strings.Repeat("a", 61):   false,
	} {
		if got := gatehouse.LooksLikeToken(s); got != want {
			t.Errorf("LooksLikeToken(%q) = %v, want %v", s, got, want)
		}
	}
}
