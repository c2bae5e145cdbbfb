package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
)

// SecretsManager is the "aws-secrets-manager" source.
type SecretsManager struct{ c *Client }

var _ secret.Source = SecretsManager{}

// SecretsManager returns the Secrets Manager source over c's credentials.
func (c *Client) SecretsManager() SecretsManager { return SecretsManager{c: c} }

var secretsManagerHints = map[string]string{
	"AccessDeniedException":       "allow secretsmanager:GetSecretValue on this secret to the sidecar's AWS identity",
	"ResourceNotFoundException":   "check the ARN, its region and the version stage",
	"UnrecognizedClientException": "the sidecar's access key is not valid",
	"InvalidSignatureException":   "the sidecar's secret access key is wrong, or its clock is off",
	"ExpiredTokenException":       "the sidecar's temporary credentials have expired",
	"DecryptionFailure":           "the sidecar's identity may not use the secret's KMS key (kms:Decrypt)",
}

// Fetch reads the secret ref.ARN at ref.VersionStage (AWSCURRENT when empty) in the ARN's region.
// A plaintext secret is the credential; a JSON object is read at ref.JSONPath, or at "password"
// when no path is given. Binary secrets are refused.
func (s SecretsManager) Fetch(ctx context.Context, ref gatehouse.SecretRef, _ proxy.Target) (gatehouse.Credential, error) {
	if ref.Source != gatehouse.SourceAWSSecretsManager {
		return gatehouse.Credential{}, fmt.Errorf("aws-secrets-manager source given a %s reference", ref.Source)
	}
	region := gatehouse.ARNRegion(ref.ARN)
	if region == "" {
		return gatehouse.Credential{}, errors.New("not a Secrets Manager ARN")
	}
	stage := ref.VersionStage
	if stage == "" {
		stage = "AWSCURRENT"
	}
	out, err := s.c.secretsManager(region).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId:     awssdk.String(ref.ARN),
		VersionStage: awssdk.String(stage),
	})
	if err != nil {
		return gatehouse.Credential{}, shorten(err, secretsManagerHints)
	}
	if out.SecretString == nil {
		return gatehouse.Credential{}, errors.New("the secret is binary (SecretBinary); store the password as a plaintext or JSON SecretString")
	}
	v, err := extract(*out.SecretString, ref.JSONPath)
	if err != nil {
		return gatehouse.Credential{}, err
	}
	return gatehouse.NewCredential(v), nil
}

// extract returns the credential from a SecretString: the whole string when it is not a JSON
// object and no path is asked for, else the string at the dot path (default "password").
// Errors name keys, never values.
func extract(s, path string) (string, error) {
	var obj map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	isObject := strings.HasPrefix(strings.TrimSpace(s), "{") && dec.Decode(&obj) == nil && !dec.More()
	if !isObject {
		if path != "" {
			return "", &JSONPathError{fmt.Sprintf("json_path %s is set but the secret is not a JSON object", path)}
		}
		return s, nil
	}
	explicit := path != ""
	if !explicit {
		path = "password"
	}
	var cur any = obj
	keys := strings.Split(path, ".")
	for i, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", &JSONPathError{fmt.Sprintf("JSON secret: %s is %s, not an object", strings.Join(keys[:i], "."), kind(cur))}
		}
		next, ok := m[k]
		if !ok {
			msg := fmt.Sprintf("JSON secret has no key %s", strings.Join(keys[:i+1], "."))
			if !explicit {
				msg += " (no json_path is set, so \"password\" is used; set json_path to the key that holds the password)"
			}
			return "", &JSONPathError{fmt.Sprintf("%s; keys there: %s", msg, keyList(m))}
		}
		cur = next
	}
	switch v := cur.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	}
	return "", &JSONPathError{fmt.Sprintf("JSON secret: %s is %s, not a string", path, kind(cur))}
}

// JSONPathError says the secret was read but holds no string at the reference's JSON path. It
// names keys, never values.
type JSONPathError struct{ msg string }

func (e *JSONPathError) Error() string { return e.msg }

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "a value"
}

func keyList(m map[string]any) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 10 {
		keys = append(keys[:10], "...")
	}
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
	}
	return b.String()
}
