package config_test

import (
	"errors"
	"mime"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kafka-connector/kafka-connector/config"
)

// crossChecks lists the variables whose value is checked against another
// one: a bad value of the first may be reported under the second, whose
// message then says what is missing.
var crossChecks = map[string][]string{
	"basic_auth":         {"secret_mount_path"},
	"broker_host":        {"broker_hosts"},
	"sasl_mechanism":     {"sasl_username", "sasl_password"},
	"sasl_username":      {"sasl_mechanism"},
	"sasl_username_file": {"sasl_mechanism"},
	"sasl_password_file": {"sasl_mechanism"},
}

// Whatever one variable holds, the configuration read is either valid or
// refused with a *config.Error naming that variable; it never panics.
func FuzzFromEnv(f *testing.F) {
	f.Add("max_messages", "250")
	names := append(config.Names(), "broker_host")
	f.Fuzz(func(t *testing.T, name, value string) {
		if !slices.Contains(names, name) {
			name = names[len(name)%len(names)]
		}
		if strings.ContainsRune(value, 0) {
			t.Skip("an environment variable cannot hold a NUL byte")
		}
		// FromEnv copies the lower-case spellings to upper case in the
		// process environment: both are cleared so that every run starts
		// from the defaults.
		for _, n := range names {
			for _, spelling := range []string{n, strings.ToUpper(n)} {
				t.Setenv(spelling, "")
				os.Unsetenv(spelling)
			}
		}
		// The default /var/secrets may exist on the machine running this.
		t.Setenv("secret_mount_path", t.TempDir())
		t.Setenv(name, value)

		cfg, err := config.FromEnv()
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("%s=%q: FromEnv accepted a configuration that Validate refuses: %v", name, value, verr)
			}
			// What is accepted must be what the variable's description
			// promises: a content type that is no media type makes every
			// invocation fail and be retried for ever.
			if _, _, err := mime.ParseMediaType(cfg.ContentType); err != nil {
				t.Errorf("content_type=%q accepted, but it is not a media type: %v", cfg.ContentType, err)
			}
			if _, _, err := net.SplitHostPort(cfg.HTTPAddr); err != nil {
				t.Errorf("http_addr=%q accepted, but it is not a listen address: %v", cfg.HTTPAddr, err)
			}
			return
		}
		var ce *config.Error
		if !errors.As(err, &ce) {
			t.Fatalf("%s=%q: error %T %v, want a *config.Error", name, value, err, err)
		}
		if ce.Var != name && !slices.Contains(crossChecks[name], ce.Var) {
			t.Errorf("%s=%q: the error names %s instead: %v", name, value, ce.Var, err)
		}
		if !strings.Contains(err.Error(), ce.Var) {
			t.Errorf("%s=%q: message %q does not name %s", name, value, err, ce.Var)
		}
	})
}
