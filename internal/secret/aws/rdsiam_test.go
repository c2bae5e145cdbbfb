package aws_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	ghaws "github.com/gatehousedb/gatehouse/internal/secret/aws"
	"github.com/gatehousedb/gatehouse/internal/secret/aws/awsemu"
)

func rdsTarget(region string, mode gatehouse.TLSMode) proxy.Target {
	ref := gatehouse.SecretRef{Source: gatehouse.SourceAWSRDSIAM, Region: region}
	return proxy.Target{
		Repository: gatehouse.Repository{Name: "orders", Type: gatehouse.PostgreSQL, Hostname: "orders.c1x2y3z4.us-east-2.rds.amazonaws.com", Port: 5432, TLSMode: mode},
		User:       gatehouse.RepositoryUser{Repository: "orders", Username: "gatehouse_iam", Secret: ref},
	}
}

const rdsEndpoint = "orders.c1x2y3z4.us-east-2.rds.amazonaws.com:5432"

func TestRDSIAMToken(t *testing.T) {
	isolate(t)
	emu := startEmulator(t)
	t.Setenv("AWS_ACCESS_KEY_ID", userKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", userSecret)
	c := newClient(t, ghaws.Config{Region: "us-east-2", Endpoint: emu.URL()})
	ctx := context.Background()

	t.Run("default region", func(t *testing.T) {
		tg := rdsTarget("", gatehouse.TLSVerifyFull)
		start := time.Now()
		cred, exp, err := c.RDSIAM().FetchWithExpiry(ctx, tg.User.Secret, tg)
		if err != nil {
			t.Fatal(err)
		}
		if err := emu.VerifyRDSAuthToken(cred.Reveal(), rdsEndpoint, "us-east-2", "gatehouse_iam"); err != nil {
			t.Errorf("RDS would refuse the token: %v", err)
		}
		if d := exp.Sub(start); d < 14*time.Minute || d > ghaws.TokenLifetime+time.Second {
			t.Errorf("token valid for %s, want about %s", d, ghaws.TokenLifetime)
		}
		// What RDS checks besides the signature.
		if err := emu.VerifyRDSAuthToken(cred.Reveal(), rdsEndpoint, "us-east-2", "someone_else"); err == nil {
			t.Error("token accepted for another user")
		}
		if err := emu.VerifyRDSAuthToken(cred.Reveal(), "other.host:5432", "us-east-2", "gatehouse_iam"); err == nil {
			t.Error("token accepted for another host")
		}
		forged := strings.Replace(cred.Reveal(), "DBUser=gatehouse_iam", "DBUser=postgres", 1)
		if err := emu.VerifyRDSAuthToken(forged, rdsEndpoint, "us-east-2", "postgres"); err == nil || !strings.Contains(err.Error(), "signature") {
			t.Errorf("forged token: err = %v, want a signature mismatch", err)
		}
	})
	t.Run("region from the reference", func(t *testing.T) {
		tg := rdsTarget("eu-west-1", gatehouse.TLSRequire)
		cred, err := c.RDSIAM().Fetch(ctx, tg.User.Secret, tg)
		if err != nil {
			t.Fatal(err)
		}
		if err := emu.VerifyRDSAuthToken(cred.Reveal(), rdsEndpoint, "eu-west-1", "gatehouse_iam"); err != nil {
			t.Errorf("RDS would refuse the token: %v", err)
		}
	})
	t.Run("needs TLS", func(t *testing.T) {
		for _, mode := range []gatehouse.TLSMode{gatehouse.TLSDisable, gatehouse.TLSAllow, gatehouse.TLSPrefer, ""} {
			tg := rdsTarget("", mode)
			_, err := c.RDSIAM().Fetch(ctx, tg.User.Secret, tg)
			if err == nil || !strings.Contains(err.Error(), "RDS IAM authentication needs TLS") {
				t.Errorf("tls_mode %q: err = %v", mode, err)
			}
		}
	})
	t.Run("no region", func(t *testing.T) {
		noRegion := newClient(t, ghaws.Config{Endpoint: emu.URL()})
		tg := rdsTarget("", gatehouse.TLSRequire)
		_, err := noRegion.RDSIAM().Fetch(ctx, tg.User.Secret, tg)
		if err == nil || !strings.Contains(err.Error(), "no AWS region") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestRDSIAMTokenTemporaryCredentials(t *testing.T) {
	isolate(t)
	emu := startEmulator(t)
	emu.SetContainerCredentials("ecs-token", awsemu.RoleARN("orders-task"))
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", emu.URL()+awsemu.ECSPath)
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-token")
	c := newClient(t, ghaws.Config{Region: "us-east-2", Endpoint: emu.URL()})
	tg := rdsTarget("", gatehouse.TLSVerifyCA)
	cred, err := c.RDSIAM().Fetch(context.Background(), tg.User.Secret, tg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cred.Reveal(), "X-Amz-Security-Token=") {
		t.Error("token signed with temporary credentials carries no session token")
	}
	if err := emu.VerifyRDSAuthToken(cred.Reveal(), rdsEndpoint, "us-east-2", "gatehouse_iam"); err != nil {
		t.Errorf("RDS would refuse the token: %v", err)
	}
}
