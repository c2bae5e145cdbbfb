package proxy_test

import (
	"encoding/pem"
	"testing"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
)

func TestUpstreamTLS(t *testing.T) {
	tests := []struct {
		mode       gatehouse.TLSMode
		host, ca   string
		skip       bool // InsecureSkipVerify
		verifyConn bool // VerifyConnection set
		serverName string
	}{
		{mode: gatehouse.TLSPrefer, host: "db.internal", skip: true, serverName: "db.internal"},
		{mode: gatehouse.TLSRequire, host: "10.0.0.5", skip: true},
		{mode: gatehouse.TLSRequire, host: "10.0.0.5", ca: testCA(t), skip: true, verifyConn: true},
		{mode: gatehouse.TLSVerifyCA, host: "db.internal", skip: true, verifyConn: true, serverName: "db.internal"},
		{mode: gatehouse.TLSVerifyFull, host: "10.0.0.5", serverName: "10.0.0.5"},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+"/"+tt.host, func(t *testing.T) {
			cfg, err := proxy.UpstreamTLS(gatehouse.Repository{Name: "r", Hostname: tt.host, TLSMode: tt.mode, CABundle: tt.ca})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.InsecureSkipVerify != tt.skip || (cfg.VerifyConnection != nil) != tt.verifyConn || cfg.ServerName != tt.serverName {
				t.Errorf("skip %v, verify %v, server name %q", cfg.InsecureSkipVerify, cfg.VerifyConnection != nil, cfg.ServerName)
			}
		})
	}
	if _, err := proxy.UpstreamTLS(gatehouse.Repository{Name: "r", TLSMode: gatehouse.TLSVerifyCA, CABundle: "not a certificate"}); err == nil {
		t.Error("a CA bundle without a certificate was accepted")
	}
}

// testCA returns a PEM certificate to use as a CA bundle.
func testCA(t *testing.T) string {
	t.Helper()
	cfg, _, err := proxy.SelfSignedTLS(nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cfg.Certificates[0].Certificate[0]}))
}
