package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v3"
)

// The metrics show principals' names, refusal counts and the corpus's
// size: beyond loopback they are served only with TLS and authentication,
// configured as every Prometheus exporter is, by an exporter-toolkit web
// configuration file (tls_server_config, basic_auth_users with bcrypt
// hashes; https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md).

// checkWebConfig refuses a web configuration that would serve the metrics
// without TLS or without authentication (basic auth users, or client
// certificates that must verify).
func checkWebConfig(path string) error {
	if path == "" {
		return errors.New("beyond loopback the metrics need TLS and authentication: set metrics_web_config (--metrics-web-config) to an exporter-toolkit web configuration file, or listen on 127.0.0.1")
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("metrics_web_config %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("metrics_web_config: %w", err)
	}
	var c web.Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("metrics_web_config %s: %w", path, err)
	}
	tc := c.TLSConfig
	switch {
	case tc.TLSCertPath == "" && tc.TLSCert == "":
		return fmt.Errorf("metrics_web_config %s has no tls_server_config: the metrics would travel in clear", path)
	case len(c.Users) == 0 && tc.ClientAuth != "RequireAndVerifyClientCert":
		return fmt.Errorf("metrics_web_config %s has neither basic_auth_users nor client_auth_type: RequireAndVerifyClientCert: anyone could read the metrics", path)
	}
	return nil
}

// serveWeb serves the metrics listener through exporter-toolkit, which
// applies the web configuration (and re-reads its certificates).
func (d *Daemon) serveWeb(s *http.Server, ln net.Listener, path string) {
	flags := &web.FlagConfig{WebConfigFile: &path}
	go func() {
		if err := web.Serve(ln, s, flags, d.log); !errors.Is(err, http.ErrServerClosed) {
			d.fail(fmt.Errorf("metrics listener: %w", err))
		}
	}()
}
