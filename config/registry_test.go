package config

import (
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kafka-connector/kafka-connector/types"
)

func TestSchemaRegistrySettings(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user, password, token := file("user", "reader\n"), file("password", " pass word\n"), file("token", "tok-123\n")
	empty := file("empty", "\n")
	srv := httptest.NewTLSServer(nil)
	srv.Close()
	ca := file("ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	notPEM := file("not-pem", "hello")
	const url = "https://registry-a:8081,https://registry-b:8081"

	t.Run("accepted", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("value_format", "schema-registry")
		t.Setenv("KEY_FORMAT", "json")
		t.Setenv("schema_registry_url", " https://registry-a:8081 , https://registry-b:8081")
		t.Setenv("schema_registry_username_file", user)
		t.Setenv("schema_registry_password_file", password)
		t.Setenv("schema_registry_ca_file", ca)
		c, err := FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		o, ok := c.SchemaRegistry()
		if !ok || len(o.URLs) != 2 || o.URLs[1] != "https://registry-b:8081" || o.Username != "reader" || o.Password != " pass word" || o.TLS == nil || o.TLS.RootCAs == nil {
			t.Errorf("registry options %+v", o)
		}
		if s := c.Trigger(); s.ValueFormat != types.FormatSchemaRegistry || s.KeyFormat != types.FormatJSON {
			t.Errorf("formats %q and %q", s.ValueFormat, s.KeyFormat)
		}
		if s := c.LogValue().String(); strings.Contains(s, "pass word") {
			t.Errorf("the configuration summary shows the password: %s", s)
		}
	})
	t.Run("token", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("schema_registry_url", "http://registry:8081")
		t.Setenv("schema_registry_token_file", token)
		c, err := FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := c.SchemaRegistry(); o.Token != "tok-123" || o.Username != "" {
			t.Errorf("registry options %+v", o)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		clearEnv(t)
		c, err := FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.SchemaRegistry(); ok {
			t.Error("a registry without schema_registry_url")
		}
		if s := c.Trigger(); s.ValueFormat != types.FormatRaw || s.KeyFormat != types.FormatRaw {
			t.Errorf("formats %q and %q, want raw", s.ValueFormat, s.KeyFormat)
		}
	})

	bad := []struct {
		name  string
		env   map[string]string
		bad   string // the variable named
		value string // the value shown
	}{
		{"unknown value format", map[string]string{"value_format": "avro"}, "value_format", "avro"},
		{"unknown key format", map[string]string{"key_format": "protobuf"}, "key_format", "protobuf"},
		{"registry format without a registry", map[string]string{"value_format": "schema-registry"}, "value_format", "schema-registry"},
		{"key format without a registry", map[string]string{"key_format": "schema-registry"}, "key_format", "schema-registry"},
		{"not a URL", map[string]string{"schema_registry_url": "registry:8081"}, "schema_registry_url", "registry:8081"},
		{"credentials in the URL", map[string]string{"schema_registry_url": "https://reader:hunter2@registry:8081"}, "schema_registry_url", "https://reader:xxxxx@registry:8081"},
		{"user without password", map[string]string{"schema_registry_url": url, "schema_registry_username_file": user}, "schema_registry_username_file", user},
		{"password without user", map[string]string{"schema_registry_url": url, "schema_registry_password_file": password}, "schema_registry_password_file", password},
		{"token and user", map[string]string{"schema_registry_url": url, "schema_registry_token_file": token,
			"schema_registry_username_file": user, "schema_registry_password_file": password}, "schema_registry_token_file", token},
		{"credentials without a registry", map[string]string{"schema_registry_token_file": token}, "schema_registry_token_file", token},
		{"CA without a registry", map[string]string{"schema_registry_ca_file": ca}, "schema_registry_ca_file", ca},
		{"missing file", map[string]string{"schema_registry_url": url, "schema_registry_token_file": filepath.Join(dir, "nope")}, "schema_registry_token_file", filepath.Join(dir, "nope")},
		{"empty password", map[string]string{"schema_registry_url": url, "schema_registry_username_file": user, "schema_registry_password_file": empty}, "schema_registry_password_file", empty},
		{"CA that is not PEM", map[string]string{"schema_registry_url": url, "schema_registry_ca_file": notPEM}, "schema_registry_ca_file", notPEM},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := FromEnv()
			var ce *Error
			if !errors.As(err, &ce) || ce.Var != tc.bad || ce.Value != tc.value {
				t.Fatalf("error %v, want one naming %s=%q", err, tc.bad, tc.value)
			}
			msg := err.Error()
			if !strings.Contains(msg, strconv.Quote(tc.value)) || strings.Contains(msg, "\n") || ce.Allowed == "" {
				t.Errorf("message %q: want one line with the value and what is allowed", msg)
			}
			for _, secret := range []string{"hunter2", "pass word", "tok-123"} {
				if strings.Contains(msg, secret) {
					t.Errorf("message %q shows a secret", msg)
				}
			}
		})
	}
}
