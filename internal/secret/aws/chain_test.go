package aws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/proxy"
	ghaws "github.com/gatehousedb/gatehouse/internal/secret/aws"
	"github.com/gatehousedb/gatehouse/internal/secret/aws/awsemu"
)

// instanceRole is the role name AWS's metadata mock serves credentials under.
const instanceRole = "baskinc-role"

// startMetadataMock builds and runs AWS's EC2 metadata mock (a tool dependency in go.mod) in
// IMDSv2-only mode, serving the given credentials, and returns its URL.
func startMetadataMock(t *testing.T, c awsemu.Credentials) string {
	t.Helper()
	dir := t.TempDir()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// The tool directive in go.mod pins the mock; "go tool -n" builds it into the build cache once
	// and prints where, so later runs do not link it again.
	bin := ""
	if out, err := exec.Command(goBin, "tool", "-n", "ec2-metadata-mock").Output(); err == nil {
		lines := strings.Fields(string(out))
		if len(lines) > 0 {
			if _, err := os.Stat(lines[len(lines)-1]); err == nil {
				bin = lines[len(lines)-1]
			}
		}
	}
	if bin == "" {
		bin = filepath.Join(dir, "ec2-metadata-mock")
		build := exec.Command(goBin, "build", "-o", bin, "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build the EC2 metadata mock: %v\n%s", err, out)
		}
	}
	cfg := map[string]any{"metadata": map[string]any{"values": map[string]any{
		"iam-security-credentials": map[string]string{
			"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339), "Type": "AWS-HMAC",
			"AccessKeyId": c.AccessKeyID, "SecretAccessKey": c.SecretAccessKey, "Token": c.SessionToken,
			"Expiration": c.Expires.UTC().Format(time.RFC3339),
		},
	}}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "aemm-config.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--imdsv2", "--hostname", "127.0.0.1", "--port", fmt.Sprint(port), "--config-file", cfgFile)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, _ := os.Create(filepath.Join(dir, "aemm.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		out.Close()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); ; {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(out.Name())
			t.Fatalf("the EC2 metadata mock did not listen on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr
}

func TestSecretsManagerInstanceProfileIMDSv2(t *testing.T) {
	isolate(t)
	emu := startEmulator(t)
	role := awsemu.RoleARN(instanceRole)
	emu.Allow(role, "arn:aws:secretsmanager:*:111111111111:secret:prod-*")
	emu.Allow(role, "arn:aws:secretsmanager:*:111111111111:secret:team/*")
	creds := emu.IssueRoleCredentials(role, 6*time.Hour)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", startMetadataMock(t, creds))
	c := newClient(t, ghaws.Config{Endpoint: emu.URL()})
	runFetchCases(t, c, []fetchCase{
		{name: "plaintext", ref: smRef(prodARN, "", ""), want: plainValue},
		{name: "nested json path", ref: smRef(nestedARN, "nested.password", ""), want: nestedValue},
		{name: "denied", ref: smRef(deniedARN, "", ""), wantErr: "AccessDeniedException: User: arn:aws:sts::111111111111:assumed-role/" + instanceRole},
	})
}

func TestSecretsManagerWebIdentity(t *testing.T) {
	dir := isolate(t)
	emu := startEmulator(t)
	role := awsemu.RoleARN("gatehouse-irsa")
	emu.Allow(role, prodARN)
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Z2F0ZWhvdXNlOnNpZGVjYXIifQ.c2ln"
	emu.AddWebIdentityToken(jwt, role)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(jwt), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tokenFile)
	t.Setenv("AWS_ROLE_ARN", role)
	t.Setenv("AWS_ROLE_SESSION_NAME", "gatehouse")
	t.Setenv("AWS_REGION", "us-east-2") // STS is regional
	c := newClient(t, ghaws.Config{Endpoint: emu.URL()})
	runFetchCases(t, c, []fetchCase{
		{name: "plaintext", ref: smRef(prodARN, "", ""), want: plainValue},
		{name: "denied", ref: smRef(jsonARN, "", ""), wantErr: "AccessDeniedException"},
	})
	if got := emu.Calls("AssumeRoleWithWebIdentity"); got != 1 {
		t.Errorf("AssumeRoleWithWebIdentity calls = %d, want 1 (credentials cached)", got)
	}

	t.Run("token not accepted", func(t *testing.T) {
		if err := os.WriteFile(tokenFile, []byte("eyJ.forged.token"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := newClient(t, ghaws.Config{Endpoint: emu.URL()})
		_, err := c.SecretsManager().Fetch(context.Background(), smRef(prodARN, "", ""), proxy.Target{})
		t.Logf("err: %v", err)
		if err == nil || !containsAll(err.Error(), "no usable AWS credentials", "InvalidIdentityToken") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestSecretsManagerECSContainerCredentials(t *testing.T) {
	isolate(t)
	emu := startEmulator(t)
	role := awsemu.RoleARN("gatehouse-task")
	emu.Allow(role, prodARN)
	emu.SetContainerCredentials("ecs-auth-token-123", role)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", emu.URL()+awsemu.ECSPath)
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-token-123")
	runFetchCases(t, newClient(t, ghaws.Config{Endpoint: emu.URL()}), []fetchCase{
		{name: "plaintext", ref: smRef(prodARN, "", ""), want: plainValue},
		{name: "denied", ref: smRef(nestedARN, "nested.password", ""), wantErr: "AccessDeniedException"},
	})
	if got := emu.Calls("ContainerCredentials"); got != 1 {
		t.Errorf("container credential calls = %d, want 1", got)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
