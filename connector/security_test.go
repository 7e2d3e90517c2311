package connector_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// secureCase is a cluster that demands something of its clients, and
// connector settings that do or do not satisfy it.
type secureCase struct {
	name    string
	cluster []kfake.Opt
	client  []kgo.Opt // for the test's own producer
	connect func(cfg *config.Config)
	deliver bool
	log     string // in the connector's log when it cannot deliver
}

func TestTLSAndSASL(t *testing.T) {
	pki := testkit.NewPKI(t)
	other := testkit.NewPKI(t) // an authority the brokers do not use
	secret := func(content string) string {
		path := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(path, []byte(content+"\n"), 0o600)
		return path
	}
	saslCluster := []kfake.Opt{
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "admin", "admin-secret"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "s256-secret"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "s512-secret"),
	}
	adminClient := []kgo.Opt{kgo.SASL(plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism())}
	tests := []secureCase{
		{
			name:    "tls",
			cluster: []kfake.Opt{kfake.TLS(pki.Server)},
			client:  []kgo.Opt{kgo.DialTLSConfig(pki.ClientConfig(t))},
			connect: func(c *config.Config) { c.TLS, c.TLSCAFile = true, pki.CAFile },
			deliver: true,
		},
		{
			name:    "mutual tls",
			cluster: []kfake.Opt{kfake.TLS(pki.RequireClientCert())},
			client:  []kgo.Opt{kgo.DialTLSConfig(pki.ClientConfig(t))},
			connect: func(c *config.Config) {
				c.TLS, c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = true, pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile
			},
			deliver: true,
		},
		{
			name:    "tls with an unknown authority",
			cluster: []kfake.Opt{kfake.TLS(pki.Server)},
			client:  []kgo.Opt{kgo.DialTLSConfig(pki.ClientConfig(t))},
			connect: func(c *config.Config) { c.TLS, c.TLSCAFile = true, other.CAFile },
			log:     "certificate",
		},
		{
			name:    "sasl plain",
			cluster: saslCluster,
			client:  adminClient,
			connect: func(c *config.Config) {
				c.SASLMechanism, c.SASLUsernameFile, c.SASLPasswordFile = "PLAIN", secret("admin"), secret("admin-secret")
			},
			deliver: true,
		},
		{
			name:    "sasl scram-sha-256",
			cluster: saslCluster,
			client:  adminClient,
			connect: func(c *config.Config) {
				c.SASLMechanism, c.SASLUsername, c.SASLPassword = "SCRAM-SHA-256", "scram256", "s256-secret"
			},
			deliver: true,
		},
		{
			name:    "sasl scram-sha-512",
			cluster: saslCluster,
			client:  []kgo.Opt{kgo.SASL(scram.Auth{User: "scram512", Pass: "s512-secret"}.AsSha512Mechanism())},
			connect: func(c *config.Config) {
				c.SASLMechanism, c.SASLUsername, c.SASLPassword = "scram-sha-512", "scram512", "s512-secret"
			},
			deliver: true,
		},
		{
			name:    "sasl wrong password",
			cluster: saslCluster,
			client:  adminClient,
			connect: func(c *config.Config) {
				c.SASLMechanism, c.SASLUsername, c.SASLPasswordFile = "PLAIN", "admin", secret("not-the-password")
			},
			log: "cannot reach kafka brokers",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cluster := testkit.ClusterWith(t, partitions, []string{"secure"}, tc.cluster...)
			client := testkit.NewClient(t, cluster, tc.client...)
			gw, url := testkit.Gateway(t)
			gw.SetFunctions(fn("guarded", "secure"))
			cfg := testkit.Config(t, cluster, url)
			tc.connect(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := cfg.LoadSecrets(); err != nil {
				t.Fatal(err)
			}
			r := testkit.Start(t, cfg)
			produceSpread(client, "secure", 2)
			if tc.deliver {
				testkit.Eventually(t, 30*time.Second, func() bool {
					return successes(t, gw.Calls("guarded")).count("secure") == 6
				}, "messages delivered over %s", tc.name)
				testkit.Eventually(t, 10*time.Second, r.Ready, "ready")
				return
			}
			testkit.Eventually(t, 30*time.Second, func() bool { return strings.Contains(r.Logs(), tc.log) },
				"a log line saying %q", tc.log)
			if r.Ready() {
				t.Errorf("ready although the brokers refuse the connector")
			}
			if n := len(gw.Calls("guarded")); n != 0 {
				t.Errorf("%d invocations without a valid connection", n)
			}
			for _, leak := range []string{"not-the-password", "admin-secret"} {
				if strings.Contains(r.Logs(), leak) {
					t.Errorf("the log shows a secret:\n%s", r.Logs())
				}
			}
		})
	}
}

// The gateway's credentials are its admin credentials, and a gateway hands
// an invocation's headers to the function: they reach a function only when
// gateway_invoke_auth asks for it, for a proxy that demands them.
func TestGatewayCredentialsStayOffInvocations(t *testing.T) {
	for _, invokeAuth := range []bool{false, true} {
		t.Run("gateway_invoke_auth="+strconv.FormatBool(invokeAuth), func(t *testing.T) {
			client, gw, cfg := setup(t, "guarded")
			gw.Username, gw.Password, gw.InvokeAuth = "admin", "gateway-secret", invokeAuth
			gw.SetFunctions(fn("guarded-fn", "guarded"))
			cfg.BasicAuth, cfg.GatewayUser, cfg.GatewayPassword = true, "admin", "gateway-secret"
			cfg.GatewayInvokeAuth = invokeAuth
			testkit.Start(t, cfg)
			client.Produce(testkit.Record("guarded", 0, nil, []byte("m")))
			testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("guarded-fn")).count("guarded") == 1 },
				"the function listed with the credentials is invoked")
			for _, c := range gw.Calls("guarded-fn") {
				user, password, sent := (&http.Request{Header: c.Header}).BasicAuth()
				if sent != invokeAuth {
					t.Errorf("the function received Authorization %q; want it only with gateway_invoke_auth=true", c.Header.Get("Authorization"))
				}
				if invokeAuth && (user != "admin" || password != "gateway-secret") {
					t.Errorf("the invocation carried %q:%q, want the gateway's credentials", user, password)
				}
			}
		})
	}
}
