package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// kafkaSecurity is what the TLS and SASL settings resolve to once their
// files are read.
type kafkaSecurity struct {
	tls                    *tls.Config
	saslUser, saslPassword string
}

// SASL mechanisms the connector speaks, as sasl_mechanism names them.
var saslMechanisms = map[string]sarama.SASLMechanism{
	"PLAIN":         sarama.SASLTypePlaintext,
	"SCRAM-SHA-256": sarama.SASLTypeSCRAMSHA256,
	"SCRAM-SHA-512": sarama.SASLTypeSCRAMSHA512,
}

// checkKafkaSecurity checks the Kafka settings that need no file.
func (c *Config) checkKafkaSecurity() error {
	// Consumer groups as the connector uses them and record headers (dead
	// letters, record extras) need 0.11 at least.
	if v, err := sarama.ParseKafkaVersion(c.KafkaVersion); err != nil || !v.IsAtLeast(sarama.V0_11_0_0) {
		return fieldError("KafkaVersion", c.KafkaVersion, nil)
	}
	if !c.TLS {
		if c.TLSInsecureSkipVerify {
			return fieldError("TLSInsecureSkipVerify", "true", errors.New("it has no effect unless tls=true"))
		}
		for _, f := range []struct{ field, value string }{
			{"TLSCAFile", c.TLSCAFile}, {"TLSCertFile", c.TLSCertFile}, {"TLSKeyFile", c.TLSKeyFile},
		} {
			if f.value != "" {
				return fieldError(f.field, f.value, errors.New("it has no effect unless tls=true"))
			}
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		if c.TLSCertFile == "" {
			return fieldError("TLSKeyFile", c.TLSKeyFile, errors.New("tls_cert_file is not set"))
		}
		return fieldError("TLSCertFile", c.TLSCertFile, errors.New("tls_key_file is not set"))
	}
	if c.SASLMechanism == "" {
		if c.SASLUsername != "" || c.SASLPassword != "" || c.SASLUsernameFile != "" || c.SASLPasswordFile != "" {
			return fieldError("SASLMechanism", "", errors.New("SASL credentials are set but no mechanism"))
		}
		return nil
	}
	if _, ok := saslMechanisms[strings.ToUpper(c.SASLMechanism)]; !ok {
		return fieldError("SASLMechanism", c.SASLMechanism, nil)
	}
	return nil
}

// LoadSecrets reads the files the configuration names: the gateway
// credentials, the TLS certificates and the SASL credentials. FromEnv calls
// it; a Config built by hand needs it before use.
func (c *Config) LoadSecrets() error {
	if c.BasicAuth {
		if err := c.readGatewaySecrets(); err != nil {
			return err
		}
	}
	var sec kafkaSecurity
	if c.TLS {
		t := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLSInsecureSkipVerify}
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return fieldError("TLSCAFile", c.TLSCAFile, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fieldError("TLSCAFile", c.TLSCAFile, errors.New("no PEM certificate in it"))
			}
			t.RootCAs = pool
		}
		if c.TLSCertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
			if err != nil {
				return fieldError("TLSCertFile", c.TLSCertFile, fmt.Errorf("with tls_key_file %s: %w", c.TLSKeyFile, err))
			}
			t.Certificates = []tls.Certificate{cert}
		}
		sec.tls = t
	}
	if c.SASLMechanism != "" {
		sec.saslUser, sec.saslPassword = c.SASLUsername, c.SASLPassword
		if c.SASLUsernameFile != "" {
			b, err := os.ReadFile(c.SASLUsernameFile)
			if err != nil {
				return fieldError("SASLUsernameFile", c.SASLUsernameFile, err)
			}
			sec.saslUser = strings.TrimSpace(string(b))
		}
		if c.SASLPasswordFile != "" {
			b, err := os.ReadFile(c.SASLPasswordFile)
			if err != nil {
				// The error names the file, never its content.
				return fieldError("SASLPasswordFile", c.SASLPasswordFile, err)
			}
			sec.saslPassword = strings.TrimRight(string(b), "\r\n")
		}
		if sec.saslUser == "" {
			return fieldError("SASLUsername", "", errors.New("sasl_mechanism is set: give sasl_username or sasl_username_file"))
		}
		if sec.saslPassword == "" {
			return fieldError("SASLPassword", "", errors.New("sasl_mechanism is set: give sasl_password or sasl_password_file"))
		}
	}
	c.kafka = sec
	return c.loadSchemaRegistry()
}

// applyKafkaSecurity sets the version, TLS and SASL of a sarama config.
func (c *Config) applyKafkaSecurity(sc *sarama.Config) {
	if v, err := sarama.ParseKafkaVersion(c.KafkaVersion); err == nil {
		sc.Version = v
	}
	if c.kafka.tls != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = c.kafka.tls.Clone()
	}
	if c.SASLMechanism != "" {
		mechanism := saslMechanisms[strings.ToUpper(c.SASLMechanism)]
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Mechanism = mechanism
		sc.Net.SASL.User = c.kafka.saslUser
		sc.Net.SASL.Password = c.kafka.saslPassword
		switch mechanism {
		case sarama.SASLTypeSCRAMSHA256:
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
		case sarama.SASLTypeSCRAMSHA512:
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
		}
	}
}

// scramClient is sarama's SCRAM conversation, done by xdg-go/scram.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	client, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = client.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }

func (s *scramClient) Done() bool { return s.conv.Done() }
