package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"strings"

	"github.com/kafka-connector/kafka-connector/schema"
	"github.com/kafka-connector/kafka-connector/types"
)

// checkSchemaRegistry checks the formats and the registry's settings that
// need no file.
func (c *Config) checkSchemaRegistry() error {
	for _, f := range []struct{ field, value string }{{"ValueFormat", c.ValueFormat}, {"KeyFormat", c.KeyFormat}} {
		if f.value == "" {
			continue // a Config built by hand: raw
		}
		format, err := types.ParseFormat(f.value)
		if err != nil {
			return fieldError(f.field, f.value, nil)
		}
		if format == types.FormatSchemaRegistry && len(c.SchemaRegistryURL) == 0 {
			return fieldError(f.field, f.value, errors.New("schema_registry_url is not set"))
		}
	}
	if len(c.SchemaRegistryURL) == 0 {
		for _, f := range []struct{ field, value string }{
			{"SchemaRegistryUsernameFile", c.SchemaRegistryUsernameFile}, {"SchemaRegistryPasswordFile", c.SchemaRegistryPasswordFile},
			{"SchemaRegistryTokenFile", c.SchemaRegistryTokenFile}, {"SchemaRegistryCAFile", c.SchemaRegistryCAFile},
		} {
			if f.value != "" {
				return fieldError(f.field, f.value, errors.New("it has no effect unless schema_registry_url is set"))
			}
		}
		return nil
	}
	for _, u := range c.SchemaRegistryURL {
		if err := checkURL(u); err != nil {
			return fieldError("SchemaRegistryURL", strings.Join(c.SchemaRegistryURL, ","), err)
		}
		if p, _ := url.Parse(u); p.User != nil {
			// The value shown is the URL without its password.
			return fieldError("SchemaRegistryURL", p.Redacted(), errors.New("credentials belong in schema_registry_username_file and schema_registry_password_file, not in the URL"))
		}
	}
	if (c.SchemaRegistryUsernameFile == "") != (c.SchemaRegistryPasswordFile == "") {
		if c.SchemaRegistryUsernameFile == "" {
			return fieldError("SchemaRegistryPasswordFile", c.SchemaRegistryPasswordFile, errors.New("schema_registry_username_file is not set"))
		}
		return fieldError("SchemaRegistryUsernameFile", c.SchemaRegistryUsernameFile, errors.New("schema_registry_password_file is not set"))
	}
	if c.SchemaRegistryTokenFile != "" && c.SchemaRegistryUsernameFile != "" {
		return fieldError("SchemaRegistryTokenFile", c.SchemaRegistryTokenFile, errors.New("a user name and password are set too: give one or the other"))
	}
	return nil
}

// loadSchemaRegistry reads the registry's credentials and CA.
func (c *Config) loadSchemaRegistry() error {
	if len(c.SchemaRegistryURL) == 0 {
		c.registry = schema.Options{}
		return nil
	}
	o := schema.Options{URLs: c.SchemaRegistryURL}
	read := func(field, path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			// The error names the file, never its content.
			return "", fieldError(field, path, err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if strings.TrimSpace(s) == "" {
			return "", fieldError(field, path, errors.New("it is empty"))
		}
		return s, nil
	}
	var err error
	if c.SchemaRegistryUsernameFile != "" {
		if o.Username, err = read("SchemaRegistryUsernameFile", c.SchemaRegistryUsernameFile); err != nil {
			return err
		}
		o.Username = strings.TrimSpace(o.Username)
		if o.Password, err = read("SchemaRegistryPasswordFile", c.SchemaRegistryPasswordFile); err != nil {
			return err
		}
	}
	if c.SchemaRegistryTokenFile != "" {
		if o.Token, err = read("SchemaRegistryTokenFile", c.SchemaRegistryTokenFile); err != nil {
			return err
		}
		o.Token = strings.TrimSpace(o.Token)
	}
	if c.SchemaRegistryCAFile != "" {
		pem, err := os.ReadFile(c.SchemaRegistryCAFile)
		if err != nil {
			return fieldError("SchemaRegistryCAFile", c.SchemaRegistryCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fieldError("SchemaRegistryCAFile", c.SchemaRegistryCAFile, errors.New("no PEM certificate in it"))
		}
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	c.registry = o
	return nil
}

// SchemaRegistry returns how to reach the schema registry, with the
// credentials read by LoadSecrets, and false when none is configured.
func (c *Config) SchemaRegistry() (schema.Options, bool) {
	if len(c.SchemaRegistryURL) == 0 {
		return schema.Options{}, false
	}
	o := c.registry
	o.URLs = c.SchemaRegistryURL // a Config built by hand may not have loaded its secrets
	return o, true
}

// format reads a format that Validate checked; unset is raw.
func format(s string) types.Format {
	f, err := types.ParseFormat(s)
	if err != nil {
		return types.FormatRaw
	}
	return f
}
