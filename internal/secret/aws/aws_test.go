package aws_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
	ghaws "github.com/gatehousedb/gatehouse/internal/secret/aws"
	"github.com/gatehousedb/gatehouse/internal/secret/aws/awsemu"
)

const (
	prodARN     = "arn:aws:secretsmanager:us-east-2:111111111111:secret:prod-db-KkAAcC"
	jsonARN     = "arn:aws:secretsmanager:us-east-2:111111111111:secret:rds-managed-AbCdEf"
	nestedARN   = "arn:aws:secretsmanager:eu-west-1:111111111111:secret:team/nested-ZyXwVu"
	binaryARN   = "arn:aws:secretsmanager:us-east-2:111111111111:secret:binary-QwErTy"
	deniedARN   = "arn:aws:secretsmanager:us-east-2:111111111111:secret:other-team-AsDfGh"
	missingARN  = "arn:aws:secretsmanager:us-east-2:111111111111:secret:nope-ZxCvBn"
	plainValue  = "pl4in-Pa55word!"
	jsonValue   = "js0n-Pa55word!"
	nestedValue = "n3sted-Pa55word!"
	prevValue   = "previous-Pa55word!"

	userKeyID  = "AKIAGATEHOUSETEST001"
	userSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// allValues are the secret values that must never show in errors or logs.
var allValues = []string{plainValue, jsonValue, nestedValue, prevValue, userSecret}

// isolate gives the test an empty AWS environment: no keys, no files, no profile, no IMDS. It
// returns a directory for the test's files.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ROLE_ARN",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	// HOME stays: the go command (which builds the metadata mock) keeps its caches there, and the
	// two variables below point the SDK away from ~/.aws.
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return dir
}

// startEmulator starts an emulator holding the test secrets, with one IAM user allowed all but
// deniedARN.
func startEmulator(t *testing.T) *awsemu.Server {
	t.Helper()
	emu := awsemu.New()
	emu.Start()
	t.Cleanup(emu.Close)
	user := emu.AddUser("gatehouse-sidecar", userKeyID, userSecret)
	for _, a := range []string{prodARN, jsonARN, nestedARN, binaryARN, missingARN} {
		emu.Allow(user, a)
	}
	emu.PutSecretString(prodARN, prevValue)
	emu.PutSecretString(prodARN, plainValue, "AWSCURRENT")
	emu.PutSecretString(prodARN, prevValue, "AWSPREVIOUS")
	emu.PutSecretString(jsonARN, `{"username":"app","password":"`+jsonValue+`","port":5432,"engine":"postgres"}`)
	emu.PutSecretString(nestedARN, `{"nested":{"password":"`+nestedValue+`"},"flag":true}`)
	emu.PutSecretBinary(binaryARN, []byte(plainValue))
	emu.PutSecretString(deniedARN, "other-team-secret")
	return emu
}

func smRef(arn, path, stage string) gatehouse.SecretRef {
	return gatehouse.SecretRef{Source: gatehouse.SourceAWSSecretsManager, ARN: arn, JSONPath: path, VersionStage: stage}
}

type fetchCase struct {
	name    string
	ref     gatehouse.SecretRef
	want    string
	wantErr string // substring of the error
}

// secretsManagerCases are the Secrets Manager semantics, run under every credential method.
var secretsManagerCases = []fetchCase{
	{name: "plaintext", ref: smRef(prodARN, "", ""), want: plainValue},
	{name: "version stage", ref: smRef(prodARN, "", "AWSPREVIOUS"), want: prevValue},
	{name: "json default password", ref: smRef(jsonARN, "", ""), want: jsonValue},
	{name: "json path", ref: smRef(jsonARN, "password", ""), want: jsonValue},
	{name: "json number", ref: smRef(jsonARN, "port", ""), want: "5432"},
	{name: "nested json path", ref: smRef(nestedARN, "nested.password", ""), want: nestedValue},
	{name: "json without password key", ref: smRef(nestedARN, "", ""),
		wantErr: `JSON secret has no key password (no json_path is set, so "password" is used; set json_path to the key that holds the password); keys there: flag, nested`},
	{name: "json path missing", ref: smRef(jsonARN, "nested.password", ""), wantErr: "JSON secret has no key nested; keys there: engine, password, port, username"},
	{name: "json path through a non-object", ref: smRef(nestedARN, "flag.password", ""), wantErr: "JSON secret: flag is a boolean, not an object"},
	{name: "json path to an object", ref: smRef(nestedARN, "nested", ""), wantErr: "JSON secret: nested is an object, not a string"},
	{name: "json path on plaintext", ref: smRef(prodARN, "password", ""), wantErr: "json_path password is set but the secret is not a JSON object"},
	{name: "binary", ref: smRef(binaryARN, "", ""), wantErr: "the secret is binary (SecretBinary)"},
	{name: "unknown stage", ref: smRef(prodARN, "", "NOPE"), wantErr: "ResourceNotFoundException"},
	{name: "denied", ref: smRef(deniedARN, "", ""), wantErr: "AccessDeniedException: User: "},
	{name: "not found", ref: smRef(missingARN, "", ""), wantErr: "ResourceNotFoundException: Secrets Manager can't find the specified secret. (check the ARN, its region and the version stage)"},
}

// runFetchCases fetches every case through a Resolver, as the sidecar does, and checks that no
// value leaks into errors or logs.
func runFetchCases(t *testing.T, c *ghaws.Client, cases []fetchCase) {
	t.Helper()
	var logs bytes.Buffer
	r, err := secret.New(secret.Config{
		Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceAWSSecretsManager: c.SecretsManager()},
		TTL:     -1,
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := proxy.Target{
				Repository: gatehouse.Repository{Name: "sales", Hostname: "db.internal", Port: 5432},
				User:       gatehouse.RepositoryUser{Repository: "sales", Username: "app", Secret: tc.ref},
			}
			if err := tc.ref.Validate(); err != nil {
				t.Fatalf("test reference does not validate: %v", err)
			}
			cred, err := r.Credential(context.Background(), tg)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErr)
				}
				t.Logf("error: %v", err)
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not contain %q", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "secret "+tc.ref.String()+": ") {
					t.Errorf("error %q does not name the reference", err)
				}
				assertNoValue(t, "error", err.Error())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, cred.Reveal()); diff != "" {
				t.Errorf("credential (-want +got):\n%s", diff)
			}
		})
	}
	assertNoValue(t, "log", logs.String())
}

func assertNoValue(t *testing.T, what, s string) {
	t.Helper()
	for _, v := range allValues {
		if strings.Contains(s, v) {
			t.Errorf("%s contains a secret value:\n%s", what, s)
		}
	}
}

func newClient(t *testing.T, cfg ghaws.Config) *ghaws.Client {
	t.Helper()
	c, err := ghaws.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestSecretsManagerEnvironmentKeys(t *testing.T) {
	isolate(t)
	emu := startEmulator(t)
	t.Setenv("AWS_ACCESS_KEY_ID", userKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", userSecret)
	runFetchCases(t, newClient(t, ghaws.Config{Endpoint: emu.URL()}), secretsManagerCases)
}

func TestSecretsManagerProfileFile(t *testing.T) {
	dir := isolate(t)
	emu := startEmulator(t)
	// The reference's layout: a named profile in a credentials file only the service can read.
	creds := filepath.Join(dir, "credentials")
	content := "[default]\naws_access_key_id = AKIAWRONGDEFAULT0000\naws_secret_access_key = wrong\n\n" +
		"[gatehouse_profile]\naws_access_key_id=" + userKeyID + "\naws_secret_access_key=" + userSecret + "\n"
	if err := os.WriteFile(creds, []byte(content), 0o540); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(creds, 0o540); err != nil {
		t.Fatal(err)
	}
	cases := []fetchCase{
		{name: "plaintext", ref: smRef(prodARN, "", ""), want: plainValue},
		{name: "nested json path", ref: smRef(nestedARN, "nested.password", ""), want: nestedValue},
		{name: "denied", ref: smRef(deniedARN, "", ""), wantErr: "AccessDeniedException"},
	}
	t.Run("--aws-profile", func(t *testing.T) {
		runFetchCases(t, newClient(t, ghaws.Config{Profile: "gatehouse_profile", Endpoint: emu.URL()}), cases)
	})
	t.Run("AWS_PROFILE", func(t *testing.T) {
		t.Setenv("AWS_PROFILE", "gatehouse_profile")
		runFetchCases(t, newClient(t, ghaws.Config{Endpoint: emu.URL()}), cases)
	})
	t.Run("default profile has a wrong key", func(t *testing.T) {
		runFetchCases(t, newClient(t, ghaws.Config{Endpoint: emu.URL()}), []fetchCase{
			{name: "unknown key", ref: smRef(prodARN, "", ""), wantErr: "UnrecognizedClientException: The security token included in the request is invalid. (the sidecar's access key is not valid)"},
		})
	})
	t.Run("missing profile", func(t *testing.T) {
		_, err := ghaws.New(context.Background(), ghaws.Config{Profile: "nope", Endpoint: emu.URL()})
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Errorf("New with a missing profile: err = %v, want one naming the profile", err)
		}
	})
}

func TestSecretsManagerWrongSecretKey(t *testing.T) {
	isolate(t)
	emu := startEmulator(t)
	t.Setenv("AWS_ACCESS_KEY_ID", userKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-key")
	runFetchCases(t, newClient(t, ghaws.Config{Endpoint: emu.URL()}), []fetchCase{
		{name: "bad signature", ref: smRef(prodARN, "", ""), wantErr: "InvalidSignatureException: The request signature we calculated does not match"},
	})
}

func TestLooseCredentialsFileWarns(t *testing.T) {
	dir := isolate(t)
	if err := os.WriteFile(filepath.Join(dir, "credentials"), []byte("[default]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	newClient(t, ghaws.Config{Region: "us-east-2", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !strings.Contains(logs.String(), "readable by other users") {
		t.Errorf("no warning about a world-readable credentials file; logs:\n%s", logs.String())
	}
}

func TestNoCredentials(t *testing.T) {
	isolate(t)
	emu := startEmulator(t)
	c := newClient(t, ghaws.Config{Endpoint: emu.URL()})
	_, err := c.SecretsManager().Fetch(context.Background(), smRef(prodARN, "", ""), proxy.Target{})
	t.Logf("err: %v", err)
	var ce *ghaws.CredentialsError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *CredentialsError", err)
	}
	if !strings.HasPrefix(err.Error(), "no usable AWS credentials") {
		t.Errorf("err = %q", err)
	}
	if got := emu.Calls("GetSecretValue"); got != 0 {
		t.Errorf("GetSecretValue calls without credentials = %d, want 0", got)
	}
}

func TestSecretsManagerUnreachable(t *testing.T) {
	isolate(t)
	emu := startEmulator(t)
	t.Setenv("AWS_ACCESS_KEY_ID", userKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", userSecret)
	c := newClient(t, ghaws.Config{Endpoint: emu.URL()})
	emu.Close()
	_, err := c.SecretsManager().Fetch(context.Background(), smRef(prodARN, "", ""), proxy.Target{})
	t.Logf("err: %v", err)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "GetSecretValue") {
		t.Errorf("err = %v, want the operation and the network error", err)
	}
}
