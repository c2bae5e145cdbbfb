package env_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret/env"
)

func TestFetch(t *testing.T) {
	t.Setenv("GATEHOUSE_TEST_PG_PASSWORD", "pa55-word")
	t.Setenv("GATEHOUSE_TEST_EMPTY", "")
	tests := []struct {
		name, varName, want, wantErr string
	}{
		{name: "set", varName: "GATEHOUSE_TEST_PG_PASSWORD", want: "pa55-word"},
		{name: "unset", varName: "GATEHOUSE_TEST_UNSET", wantErr: "environment variable GATEHOUSE_TEST_UNSET is not set on the sidecar"},
		{name: "empty", varName: "GATEHOUSE_TEST_EMPTY", wantErr: "environment variable GATEHOUSE_TEST_EMPTY is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := env.Source{}.Fetch(context.Background(), gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: tc.varName}, proxy.Target{})
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(tc.wantErr, gotErr); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if c.Reveal() != tc.want {
				t.Errorf("value mismatch")
			}
		})
	}
}
