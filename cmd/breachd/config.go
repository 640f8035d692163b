package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/certs"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/policy"
	"github.com/breachd/breachd/quota"
	"github.com/breachd/breachd/server"
	"github.com/breachd/breachd/store"
	"github.com/breachd/breachd/webhook"
)

// config is the daemon's configuration. Each value comes from, in rising
// precedence: its default, the YAML file (--config or BREACHD_CONFIG), the
// environment (BREACHD_ and the key's path in capitals, e.g.
// BREACHD_QUOTA_RATE), and the flags that exist for it.
type config struct {
	Data             string   `yaml:"data" help:"corpus directory (required)"`
	Addr             string   `yaml:"addr" help:"gRPC listen address; beyond loopback it needs TLS and authentication"`
	Admin            bool     `yaml:"admin" help:"serve the AdminService (imports through the daemon): over TCP only with TLS and an admin key; without TLS on the admin socket"`
	AdminSocket      string   `yaml:"admin_socket" help:"unix socket for admin calls without credentials (mode 0600): the only admin path of a daemon without TLS (default there: DATA/breachd.sock)"`
	AdminSocketGroup bool     `yaml:"admin_socket_group" help:"make the admin socket 0660, for the daemon's group"`
	MetricsAddr      string   `yaml:"metrics_addr" help:"Prometheus /metrics listen address; empty for none; beyond loopback it needs metrics_web_config"`
	MetricsWebConfig string   `yaml:"metrics_web_config" help:"exporter-toolkit web configuration file (TLS and basic auth) for the metrics listener"`
	FPR              float64  `yaml:"fpr" help:"Bloom filter target false-positive rate, between 0 and 1"`
	Index            bool     `yaml:"index" help:"keep the lookup index (37 bytes a digest of disk and page cache) so present lookups skip Badger"`
	ShutdownTimeout  duration `yaml:"shutdown_timeout" help:"how long calls in flight may take to finish at shutdown"`
	LogLevel         string   `yaml:"log_level" help:"debug, info, warn or error"`
	TLS              struct {
		Cert       string `yaml:"cert" help:"PEM certificate (chain); with key, turns on TLS and authentication"`
		Key        string `yaml:"key" help:"PEM private key"`
		ClientCA   string `yaml:"client_ca" help:"PEM CA for client certificates; turns on mutual TLS"`
		ClientAuth string `yaml:"client_auth" help:"with client_ca: require (every client shows a certificate) or verify-if-given (API keys too)"`
	} `yaml:"tls"`
	Auth struct {
		APIKeys        bool           `yaml:"api_keys" help:"accept API keys from DATA/keys.json ('breachd keys')"`
		KeysReload     duration       `yaml:"keys_reload" help:"how often the key file is re-read (a revoked key stops working within this)"`
		Reflection     bool           `yaml:"reflection" help:"allow server reflection to authenticated callers"`
		MTLSIdentities []mtlsIdentity `yaml:"mtls_identities" help:"client certificates and the principals they map to"`
	} `yaml:"auth"`
	Quota struct {
		Rate           float64  `yaml:"rate" help:"default tokens per second per principal (a call costs 1, a bulk batch its digest count)"`
		Burst          int      `yaml:"burst" help:"default bucket size per principal"`
		MaxStreams     int      `yaml:"max_streams" help:"concurrent streams per principal"`
		MaxStreamWait  duration `yaml:"max_stream_wait" help:"how long a bulk batch may wait for quota before RESOURCE_EXHAUSTED"`
		AnonymousRate  float64  `yaml:"anonymous_rate" help:"with TLS: requests per second per source address for what needs no key (health, the open range API and catalogue); beyond it RESOURCE_EXHAUSTED or 429 with Retry-After"`
		AnonymousBurst int      `yaml:"anonymous_burst" help:"bucket size per source address for what needs no key"`
		MaxWatches     int      `yaml:"max_health_watches" help:"with TLS: Health.Watch streams open at once, from anyone"`
		MaxWatchesAddr int      `yaml:"max_health_watches_per_address" help:"with TLS: Health.Watch streams open at once from one source address"`
	} `yaml:"quota"`
	Limits struct {
		MaxRecvMsgSize       int      `yaml:"max_recv_msg_size" help:"largest request, bytes"`
		MaxSendMsgSize       int      `yaml:"max_send_msg_size" help:"largest answer, bytes"`
		MaxConcurrentStreams uint32   `yaml:"max_concurrent_streams" help:"calls in flight per connection"`
		MaxConnectionIdle    duration `yaml:"max_connection_idle" help:"close connections idle this long"`
		MaxConnectionAge     duration `yaml:"max_connection_age" help:"ask clients to reconnect after this long, so that balancing clients spread over replicas again"`
		MaxConnectionGrace   duration `yaml:"max_connection_age_grace" help:"how long calls in flight may still take after max_connection_age"`
		KeepaliveTime        duration `yaml:"keepalive_time" help:"ping a quiet connection after this long"`
		KeepaliveTimeout     duration `yaml:"keepalive_timeout" help:"wait this long for the ping's answer"`
		MinPingInterval      duration `yaml:"min_ping_interval" help:"refuse clients that ping more often"`
		MaxConnections       int      `yaml:"max_connections" help:"connections open at once on each listener (gRPC, HTTP, metrics); more are closed as they arrive; 0 for no cap"`
		MaxConnectionsAddr   int      `yaml:"max_connections_per_address" help:"connections open at once from one source address (an IPv6 /64) on each listener; 0 for no cap"`
		HandshakeTimeout     duration `yaml:"handshake_timeout" help:"close a new connection that has not finished its TLS handshake (and, over HTTP, sent its request headers) within this"`
		HTTPReadTimeout      duration `yaml:"http_read_timeout" help:"the longest an HTTP request may take to arrive"`
		HTTPWriteTimeout     duration `yaml:"http_write_timeout" help:"the longest an HTTP answer may take to write"`
		HTTPIdleTimeout      duration `yaml:"http_idle_timeout" help:"close a kept-alive HTTP connection idle this long"`
		HTTPMaxHeaderBytes   int      `yaml:"http_max_header_bytes" help:"largest HTTP request headers, bytes"`
	} `yaml:"limits"`
	HTTP struct {
		Addr       string `yaml:"addr" help:"listen address of the HTTP face (Have I Been Pwned's API v3 and the range API); empty for none"`
		OpenPublic bool   `yaml:"open_public" help:"serve the range API and the breach catalogue over HTTP without a key, as upstream; false requires a key with the check scope"`
		Server     string `yaml:"server" help:"the HTTP face's server: fasthttp (HTTP/1.1 only; answers /range with 1.3-1.6 times the requests a second of net/http on the same cores, and every other route through net/http's handlers) or net/http (Go's; HTTP/2 over TLS)"`
		// TrustedProxies: addresses or CIDR prefixes.
		TrustedProxies []string `yaml:"trusted_proxies" help:"reverse proxies in front of the HTTP face (addresses or CIDR prefixes, e.g. 10.0.0.0/8): a request from one is charged and logged as from the client its X-Forwarded-For names; empty: X-Forwarded-For is never read"`
	} `yaml:"http"`
	Replication struct {
		Publish      string   `yaml:"publish" help:"NATS URL(s), comma-separated: publish the corpus there for read replicas (this daemon is the writer)"`
		Follow       string   `yaml:"follow" help:"NATS URL(s), comma-separated: serve as a read replica of the corpus published there"`
		Advertise    string   `yaml:"advertise" help:"the writer's gRPC address as replicas quote it to callers who try to import there (default: addr)"`
		CredsFile    string   `yaml:"creds_file" help:"NATS credentials file (JWT and seed)"`
		TokenFile    string   `yaml:"token_file" help:"file holding a NATS token (or set BREACHD_NATS_TOKEN); never on a command line"`
		CA           string   `yaml:"ca" help:"PEM CA of the NATS servers' certificates (turns on TLS)"`
		Cert         string   `yaml:"cert" help:"PEM client certificate for NATS, with key"`
		Key          string   `yaml:"key" help:"PEM key of the NATS client certificate"`
		ObjectBucket string   `yaml:"object_bucket" help:"JetStream object store bucket holding snapshots and deltas"`
		KVBucket     string   `yaml:"kv_bucket" help:"JetStream key-value bucket naming them and the current one"`
		Replicas     int      `yaml:"replicas" help:"JetStream servers that keep each bucket (3 in a three-node cluster)"`
		MaxLag       duration `yaml:"max_lag" help:"a replica says NOT_SERVING once it has been behind the writer, or without an answer from NATS, this long"`
		ServeStale   bool     `yaml:"serve_stale" help:"a replica stays SERVING whatever its lag (stale answers rather than none)"`
		MaxDeltas    int      `yaml:"max_deltas" help:"the writer publishes a fresh snapshot after this many deltas (or once deltas add up to half a snapshot), and prunes older history"`
	} `yaml:"replication"`
	Policy struct {
		Mode       modeName          `yaml:"mode" help:"how assessments are answered: enforce, or report-only (compute, count and log each decision, answer allow)"`
		Rules      []policyRule      `yaml:"rules" help:"assessment rules in order; the strictest decision of those that fire is the answer, and each is a reason"`
		Principals []principalPolicy `yaml:"principals" help:"policies of their own for some principals (each with principal, mode and rules)"`
	} `yaml:"policy"`
	Privacy struct {
		IndexKeyFile   string `yaml:"index_key_file" help:"index key file ('breachd keys index create'): the email corpus stores a keyed SHA-256 of each digest, never a digest; a keyed corpus needs it to open ('breachd rekey' keys an existing one)"`
		PrivateLookups bool   `yaml:"private_lookups" help:"answer private checks (docs/PRIVATE-LOOKUP.md; needs index_key_file): a new corpus is built with a private row per account (an OPRF evaluation each, about 95 µs of CPU), and one built without is refused ('breachd rekey --private' converts a plain one)"`
		BucketMin      int    `yaml:"bucket_min" help:"the fewest accounts every bucket of a private check holds: the prefix length advertised is the longest that keeps every bucket at least this full"`
	} `yaml:"privacy"`
	Watch struct {
		Webhooks  []webhookConfig `yaml:"webhooks" help:"endpoints that receive exposure events as Standard Webhooks (each with url and secret_file)"`
		RetryFor  duration        `yaml:"retry_for" help:"how long an event is retried at an endpoint before it is dead-lettered (listed by 'breachctl watch deliveries')"`
		Retention duration        `yaml:"retention" help:"how long exposure events are kept once every endpoint has had them; 'breachctl watch events' finds only those (a cursor older is refused)"`
	} `yaml:"watch"`
	Import struct {
		IdleTimeout       duration `yaml:"idle_timeout" help:"end an import stream that sends nothing this long"`
		MaxPendingDigests int      `yaml:"max_pending_digests" help:"digests a first import may buffer in memory (32 bytes each) before it goes on with write batches"`
		DiskReserve       int64    `yaml:"disk_reserve" help:"bytes an import must leave free on the corpus's filesystem; past it the import is refused (RESOURCE_EXHAUSTED) and serving goes on"`
	} `yaml:"import"`
}

// policyRule is one assessment rule (package policy): when every
// condition given holds, it fires and asks for its decision.
type policyRule struct {
	Name     string       `yaml:"name"`
	When     policyWhen   `yaml:"when"`
	Decision decisionName `yaml:"decision"` // allow, warn, step_up, reset or block
}

type policyWhen struct {
	EmailExposed         *bool         `yaml:"email_exposed,omitempty"`
	PairExposed          *bool         `yaml:"pair_exposed,omitempty"`
	PasswordUnknown      *bool         `yaml:"password_unknown,omitempty"`
	PasswordCountAtLeast uint64        `yaml:"password_count_at_least,omitempty"`
	BreachedWithin       duration      `yaml:"breached_within,omitempty"`
	Contexts             []contextName `yaml:"contexts,omitempty"`
}

// principalPolicy is the policy of one principal.
type principalPolicy struct {
	Principal string       `yaml:"principal"`
	Mode      modeName     `yaml:"mode"`
	Rules     []policyRule `yaml:"rules"`
}

// Policy values that fail, in the file, with their line.
type (
	decisionName string
	modeName     string
	contextName  string
)

func (d *decisionName) UnmarshalYAML(n *yaml.Node) error {
	if _, err := breachd.ParseDecision(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = decisionName(n.Value)
	return nil
}

func (m *modeName) UnmarshalYAML(n *yaml.Node) error {
	if _, err := policy.ParseMode(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*m = modeName(n.Value)
	return nil
}

func (c *contextName) UnmarshalYAML(n *yaml.Node) error {
	if ctx, err := breachd.ParseAssessContext(n.Value); err != nil || ctx == breachd.ContextUnspecified {
		return fmt.Errorf("line %d: context %q: want signup, login or password_change", n.Line, n.Value)
	}
	*c = contextName(n.Value)
	return nil
}

// policies returns the daemon's assessment policies, or the first problem
// with them, named by its key.
func (c *config) policies() (daemon.Policy, error) {
	var out daemon.Policy
	var err error
	if out.Default, err = toPolicy("policy", string(c.Policy.Mode), c.Policy.Rules); err != nil {
		return out, err
	}
	for i, pp := range c.Policy.Principals {
		key := fmt.Sprintf("policy.principals[%d]", i)
		if pp.Principal == "" {
			return out, fmt.Errorf("%s.principal is empty", key)
		}
		if _, dup := out.ByPrincipal[pp.Principal]; dup {
			return out, fmt.Errorf("%s.principal %q has a policy already", key, pp.Principal)
		}
		p, err := toPolicy(key, string(pp.Mode), pp.Rules)
		if err != nil {
			return out, err
		}
		if out.ByPrincipal == nil {
			out.ByPrincipal = map[string]policy.Policy{}
		}
		out.ByPrincipal[pp.Principal] = p
	}
	return out, nil
}

func toPolicy(key, mode string, rules []policyRule) (policy.Policy, error) {
	var p policy.Policy
	var err error
	if p.Mode, err = policy.ParseMode(mode); err != nil {
		return p, fmt.Errorf("%s.%w", key, err)
	}
	for i, r := range rules {
		rk := fmt.Sprintf("%s.rules[%d]", key, i)
		d, err := breachd.ParseDecision(string(r.Decision))
		if err != nil {
			return p, fmt.Errorf("%s.decision: %w", rk, err)
		}
		w := policy.Conditions{EmailExposed: r.When.EmailExposed, PairExposed: r.When.PairExposed, PasswordUnknown: r.When.PasswordUnknown,
			PasswordCountAtLeast: r.When.PasswordCountAtLeast, BreachedWithin: time.Duration(r.When.BreachedWithin)}
		for j, cs := range r.When.Contexts {
			ctx, err := breachd.ParseAssessContext(string(cs))
			if err != nil || ctx == breachd.ContextUnspecified {
				return p, fmt.Errorf("%s.when.contexts[%d]: %q: want signup, login or password_change", rk, j, cs)
			}
			w.Contexts = append(w.Contexts, ctx)
		}
		p.Rules = append(p.Rules, policy.Rule{Name: r.Name, When: w, Decision: d})
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%s.%w", key, err)
	}
	return p, nil
}

// mtlsIdentity maps client certificates to a principal.
type mtlsIdentity struct {
	Match  string   `yaml:"match"` // CN=NAME, DNS:NAME or URI:URI
	Name   string   `yaml:"name"`
	Scopes []string `yaml:"scopes"`
	Rate   float64  `yaml:"rate,omitempty"`
	Burst  int      `yaml:"burst,omitempty"`
}

func defaultConfig() config {
	so, lim := store.DefaultOptions(), server.DefaultTransportLimits()
	var c config
	c.Addr = "127.0.0.1:7355"
	c.Admin = true
	c.FPR = so.FalsePositiveRate
	c.Index = so.Index != store.IndexOff
	c.ShutdownTimeout = duration(10 * time.Second)
	c.LogLevel = "info"
	c.TLS.ClientAuth = string(certs.RequireClientCert)
	c.Auth.APIKeys = true
	c.Auth.KeysReload = duration(2 * time.Second)
	c.Privacy.BucketMin = so.BucketMin
	c.Auth.Reflection = true
	c.Quota.Rate, c.Quota.Burst = 1000, 20_000
	c.Quota.MaxStreams = 8
	c.Quota.MaxStreamWait = duration(5 * time.Second)
	c.Limits.MaxRecvMsgSize = lim.MaxRecvMsgSize
	c.Limits.MaxSendMsgSize = lim.MaxSendMsgSize
	c.Limits.MaxConcurrentStreams = lim.MaxConcurrentStreams
	c.Limits.MaxConnectionIdle = duration(lim.MaxConnectionIdle)
	c.Limits.MaxConnectionAge = duration(lim.MaxConnectionAge)
	c.Limits.MaxConnectionGrace = duration(lim.MaxConnectionAgeGrace)
	c.Limits.KeepaliveTime = duration(lim.KeepaliveTime)
	c.Limits.KeepaliveTimeout = duration(lim.KeepaliveTimeout)
	c.Limits.MinPingInterval = duration(lim.MinPingInterval)
	dc := daemon.DefaultConfig()
	n := dc.Network
	c.Limits.MaxConnections, c.Limits.MaxConnectionsAddr = n.MaxConnections, n.MaxConnectionsPerAddress
	c.Limits.HandshakeTimeout = duration(n.HandshakeTimeout)
	c.Limits.HTTPReadTimeout, c.Limits.HTTPWriteTimeout, c.Limits.HTTPIdleTimeout = duration(n.HTTPReadTimeout), duration(n.HTTPWriteTimeout), duration(n.HTTPIdleTimeout)
	c.Limits.HTTPMaxHeaderBytes = n.HTTPMaxHeaderBytes
	c.Quota.AnonymousRate, c.Quota.AnonymousBurst = dc.Quota.Anonymous.Rate, dc.Quota.Anonymous.Burst
	c.Quota.MaxWatches, c.Quota.MaxWatchesAddr = dc.Quota.MaxWatches, dc.Quota.MaxWatchesPerAddress
	c.HTTP.OpenPublic = true
	c.HTTP.Server = daemon.HTTPServerFast
	c.Replication.ObjectBucket, c.Replication.KVBucket, c.Replication.Replicas = natsrepl.DefaultObjectBucket, natsrepl.DefaultKVBucket, 1
	c.Replication.MaxLag, c.Replication.MaxDeltas = duration(natsrepl.DefaultMaxLag), natsrepl.DefaultMaxDeltas
	c.Import.IdleTimeout = duration(server.DefaultImportIdleTimeout)
	c.Watch.RetryFor, c.Watch.Retention = duration(24*time.Hour), duration(30*24*time.Hour)
	c.Import.MaxPendingDigests = 4_000_000 // 128 MiB
	c.Import.DiskReserve = store.DefaultOptions().DiskReserve
	return c
}

// duration is a time.Duration written as "10s" in YAML and the environment.
type duration time.Duration

func (d duration) String() string                    { return time.Duration(d).String() }
func (d duration) MarshalYAML() (any, error)         { return d.String(), nil }
func (d *duration) UnmarshalYAML(n *yaml.Node) error { return d.set(n.Value) }
func (d *duration) set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 10s or 2m", s)
	}
	*d = duration(v)
	return nil
}

// serveFlags are the flags of 'breachd serve': each sets one key.
var serveFlags = []struct{ name, key string }{
	{"data", "data"}, {"addr", "addr"}, {"admin", "admin"}, {"metrics-addr", "metrics_addr"}, {"admin-socket", "admin_socket"}, {"metrics-web-config", "metrics_web_config"}, {"fpr", "fpr"}, {"index", "index"},
	{"shutdown-timeout", "shutdown_timeout"}, {"log-level", "log_level"},
	{"http-addr", "http.addr"}, {"publish", "replication.publish"}, {"follow", "replication.follow"}, {"serve-stale", "replication.serve_stale"}, {"tls-cert", "tls.cert"}, {"tls-key", "tls.key"}, {"client-ca", "tls.client_ca"},
}

// loadProcessConfig is loadConfig from this process's environment, which
// may hold no BREACHD_ variable that names no key.
func loadProcessConfig(name string, args []string, stderr io.Writer) (config, error) {
	if err := checkEnv(os.Environ()); err != nil {
		return config{}, err
	}
	return loadConfig(name, args, stderr, os.Getenv)
}

// loadConfig builds the configuration of 'breachd serve' (and 'config
// print') from its sources. usage is true for a usage error (already shown).
func loadConfig(name string, args []string, stderr io.Writer, env func(string) string) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", env("BREACHD_CONFIG"), "YAML configuration file (keys as in 'breachd config print')")
	vals := map[string]*string{}
	for _, f := range serveFlags {
		vals[f.name] = new(string)
		help, def := keyHelp(f.key, c)
		fs.Func(f.name, fmt.Sprintf("%s (key %s, default %s)", help, f.key, def), func(s string) error { *vals[f.name] = s; return nil })
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		fs.PrintDefaults()
		return c, errUsage
	}
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true) // a misspelt key is an error, not a silent default
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			// yaml names Go types ("field rat not found in type
			// struct { Rate float64 ... }"): the key and line are what
			// an operator can act on.
			msg := goTypes.ReplaceAllString(err.Error(), "")
			return c, fmt.Errorf("config %s: %s (the keys are those of 'breachd config print')", *file, msg)
		}
		// A second document (after "---") would be read by nothing:
		// refused, as a misspelt key is.
		var more yaml.Node
		if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: more than one YAML document; breachd reads one: merge them", *file)
		}
	}
	if err := walkKeys(&c, "", func(key string, v reflect.Value) error {
		if s := env(envName(key)); s != "" {
			if err := setValue(v, s); err != nil {
				return fmt.Errorf("invalid %s (%s): %w", key, envName(key), err)
			}
		}
		return nil
	}); err != nil {
		return c, err
	}
	var ferr error
	fs.Visit(func(f *flag.Flag) {
		for _, sf := range serveFlags {
			if sf.name == f.Name && ferr == nil {
				_ = walkKeys(&c, "", func(key string, v reflect.Value) error {
					if key == sf.key {
						if err := setValue(v, *vals[sf.name]); err != nil {
							ferr = fmt.Errorf("invalid --%s: %w", sf.name, err)
						}
					}
					return nil
				})
			}
		}
	})
	if ferr != nil {
		return c, ferr
	}
	return c, nil
}

// goTypes matches the Go type yaml quotes in an unknown-field error.
var goTypes = regexp.MustCompile(` in type (struct \{[^\n]*\}|[\w.\[\]*]+)`)

// otherEnv names the BREACHD_ variables that are not configuration keys.
var otherEnv = []string{"BREACHD_CONFIG", "BREACHD_NATS_TOKEN", "BREACHD_API_KEY"}

// checkEnv refuses a BREACHD_ variable of environ that names no key: a
// misspelt variable would otherwise be ignored, while a misspelt YAML key
// is an error.
func checkEnv(environ []string) error {
	known := map[string]bool{}
	for _, n := range otherEnv {
		known[n] = true
	}
	c := defaultConfig()
	_ = walkKeys(&c, "", func(key string, _ reflect.Value) error {
		known[envName(key)] = true
		return nil
	})
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "BREACHD_") && value != "" && !known[name] { // empty is unset, as for the keys
			return fmt.Errorf("unknown environment variable %s: it names no configuration key (see 'breachd config print'; a key a.b is BREACHD_A_B)", name)
		}
	}
	return nil
}

func envName(key string) string {
	return "BREACHD_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key))
}

// keyHelp returns a key's help text and its value in c, for flag usage.
func keyHelp(key string, c config) (help, value string) {
	_ = walkFields(reflect.ValueOf(&c).Elem(), "", func(k string, f reflect.StructField, v reflect.Value) error {
		if k == key {
			help, value = f.Tag.Get("help"), fmt.Sprint(v.Interface())
		}
		return nil
	})
	if value == "" {
		value = `""`
	}
	return help, value
}

// walkKeys calls fn for every scalar key of c (lists are file-only).
func walkKeys(c *config, _ string, fn func(key string, v reflect.Value) error) error {
	return walkFields(reflect.ValueOf(c).Elem(), "", func(k string, _ reflect.StructField, v reflect.Value) error { return fn(k, v) })
}

func walkFields(v reflect.Value, prefix string, fn func(key string, f reflect.StructField, v reflect.Value) error) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
		fv := v.Field(i)
		switch {
		case fv.Kind() == reflect.Struct:
			if err := walkFields(fv, key+".", fn); err != nil {
				return err
			}
		case fv.Kind() == reflect.Slice:
		default:
			if err := fn(key, f, fv); err != nil {
				return err
			}
		}
	}
	return nil
}

// setValue sets a scalar from its text form.
func setValue(v reflect.Value, s string) error {
	if d, ok := v.Addr().Interface().(*duration); ok {
		return d.set(s)
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(n)
	case reflect.Uint32:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a whole number from 0 to %d", s, uint32(1<<32-1))
		}
		v.SetUint(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("cannot be set from text")
	}
	return nil
}

// optionKeys names the configuration key behind each package's option.
var optionKeys = map[string]string{
	"FalsePositiveRate":        "fpr",
	"MaxBulkDigests":           "import.max_pending_digests",
	"DiskReserve":              "import.disk_reserve",
	"MaxRecvMsgSize":           "limits.max_recv_msg_size",
	"MaxSendMsgSize":           "limits.max_send_msg_size",
	"MaxConcurrentStreams":     "limits.max_concurrent_streams",
	"MaxConnectionIdle":        "limits.max_connection_idle",
	"MaxConnectionAge":         "limits.max_connection_age",
	"MaxConnectionAgeGrace":    "limits.max_connection_age_grace",
	"KeepaliveTime":            "limits.keepalive_time",
	"KeepaliveTimeout":         "limits.keepalive_timeout",
	"MinPingInterval":          "limits.min_ping_interval",
	"MaxConnections":           "limits.max_connections",
	"MaxConnectionsPerAddress": "limits.max_connections_per_address",
	"HandshakeTimeout":         "limits.handshake_timeout",
	"HTTPReadTimeout":          "limits.http_read_timeout",
	"HTTPWriteTimeout":         "limits.http_write_timeout",
	"HTTPIdleTimeout":          "limits.http_idle_timeout",
	"HTTPMaxHeaderBytes":       "limits.http_max_header_bytes",
	"Anonymous.Rate":           "quota.anonymous_rate",
	"Anonymous.Burst":          "quota.anonymous_burst",
	"Quota.Rate":               "quota.rate",
	"Quota.Burst":              "quota.burst",
	"Quota.MaxStreams":         "quota.max_streams",
}

// keyError words an invalid option by its configuration key, and the flag
// and variable that set it.
func keyError(err error) error {
	var oe *breachd.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	key, ok := optionKeys[oe.Option]
	if !ok {
		return err
	}
	return fmt.Errorf("invalid %s = %v (%s): want %s", key, oe.Value, sources(key), oe.Want)
}

// sources lists where a key can be set.
func sources(key string) string {
	out := []string{}
	for _, f := range serveFlags {
		if f.key == key {
			out = append(out, "--"+f.name)
		}
	}
	return strings.Join(append(out, envName(key), "key "+key+" in --config"), ", ")
}

// validate checks what no package checks for it, and every package's options.
func (c *config) validate() error {
	bad := func(key string, v any, want string) error {
		return fmt.Errorf("invalid %s = %v (%s): want %s", key, v, sources(key), want)
	}
	var lvl slog.Level
	switch {
	case c.Data == "":
		return bad("data", `""`, "the corpus directory")
	case c.ShutdownTimeout <= 0:
		return bad("shutdown_timeout", c.ShutdownTimeout, "a positive duration")
	case lvl.UnmarshalText([]byte(c.LogLevel)) != nil:
		return bad("log_level", c.LogLevel, "debug, info, warn or error")
	case (c.TLS.Cert == "") != (c.TLS.Key == ""):
		return bad("tls.key", c.TLS.Key, "a key with tls.cert, or neither")
	case c.TLS.ClientCA != "" && c.TLS.Cert == "":
		return bad("tls.client_ca", c.TLS.ClientCA, "tls.cert and tls.key as well: mutual TLS is TLS")
	case c.TLS.ClientAuth != string(certs.RequireClientCert) && c.TLS.ClientAuth != string(certs.VerifyIfGiven):
		return bad("tls.client_auth", c.TLS.ClientAuth, "require or verify-if-given")
	case c.Privacy.PrivateLookups && c.Privacy.IndexKeyFile == "":
		return bad("privacy.private_lookups", true, "privacy.index_key_file as well: the private lookup key is the index key's")
	case c.Privacy.BucketMin < 1:
		return bad("privacy.bucket_min", c.Privacy.BucketMin, "at least 1 account")
	case c.Auth.KeysReload < duration(100*time.Millisecond):
		return bad("auth.keys_reload", c.Auth.KeysReload, "at least 100ms")
	case c.Quota.MaxStreamWait < 0:
		return bad("quota.max_stream_wait", c.Quota.MaxStreamWait, "0 or a positive duration")
	case c.Replication.Publish != "" && c.Replication.Follow != "":
		return bad("replication.follow", c.Replication.Follow, "empty when replication.publish is set: a daemon is the writer or a replica, not both")
	case c.Replication.Replicas < 1 || c.Replication.Replicas > 5:
		return bad("replication.replicas", c.Replication.Replicas, "1 to 5")
	case c.Replication.MaxLag < duration(time.Second):
		return bad("replication.max_lag", c.Replication.MaxLag, "at least 1s")
	case c.Replication.MaxDeltas < 1:
		return bad("replication.max_deltas", c.Replication.MaxDeltas, "at least 1")
	case c.Import.IdleTimeout <= 0:
		return bad("import.idle_timeout", c.Import.IdleTimeout, "a positive duration")
	}
	for i, m := range c.Auth.MTLSIdentities {
		if _, err := m.principal(); err != nil {
			return fmt.Errorf("invalid auth.mtls_identities[%d]: %w", i, err)
		}
	}
	if _, err := c.trustedProxies(); err != nil {
		return err
	}
	if _, err := c.policies(); err != nil {
		return err
	}
	if _, err := c.webhooks(); err != nil {
		return err
	}
	if c.Watch.RetryFor < 0 {
		return bad("watch.retry_for", c.Watch.RetryFor, "a positive duration")
	}
	if c.Watch.Retention < 0 {
		return bad("watch.retention", c.Watch.Retention, "a positive duration")
	}
	so := c.storeOptions()
	if _, err := quota.New(c.quotaLimits(), c.Quota.MaxStreams); err != nil {
		return keyError(err)
	}
	if err := c.anonymousLimits().Validate("Anonymous."); err != nil {
		return keyError(err)
	}
	switch {
	case c.Quota.MaxWatches < 0:
		return bad("quota.max_health_watches", c.Quota.MaxWatches, "0 (no cap) or more")
	case c.Quota.MaxWatchesAddr < 1:
		return bad("quota.max_health_watches_per_address", c.Quota.MaxWatchesAddr, "at least 1")
	}
	for _, err := range []error{so.Validate(), c.limits().Validate(), c.network().Validate()} {
		if err != nil {
			return keyError(err)
		}
	}
	return nil
}

func (m mtlsIdentity) principal() (auth.CertIdentity, error) {
	scopes, err := auth.ParseScopes(strings.Join(m.Scopes, ","))
	if err != nil {
		return auth.CertIdentity{}, err
	}
	ci := auth.CertIdentity{Match: m.Match, Principal: auth.Principal{Name: m.Name, Scopes: scopes, Rate: m.Rate, Burst: m.Burst}}
	return ci, auth.ValidateCertIdentity(ci)
}

func (c *config) storeOptions() store.Options {
	so := store.DefaultOptions()
	so.FalsePositiveRate = c.FPR
	if !c.Index {
		so.Index = store.IndexOff
	}
	so.MaxBulkDigests = c.Import.MaxPendingDigests
	so.DiskReserve = c.Import.DiskReserve
	return so
}

// webhookConfig is one endpoint of exposure events.
type webhookConfig struct {
	URL        string `yaml:"url" help:"http(s) URL the events are POSTed to"`
	SecretFile string `yaml:"secret_file" help:"file holding the signing secret (whsec_ and base64, as Standard Webhooks writes them, or 16 or more bytes of text); two lines, two secrets, during a rotation: each event is signed with both"`
}

// trustedProxies are http.trusted_proxies as prefixes (an address is its
// own /32 or /128).
func (c *config) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, v := range c.HTTP.TrustedProxies {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("invalid http.trusted_proxies[%d] = %q: want an address (10.0.0.7) or a CIDR prefix (10.0.0.0/8)", i, v)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// webhooks are the endpoints of c, their secrets read from their files.
func (c *config) webhooks() ([]webhook.Endpoint, error) {
	var out []webhook.Endpoint
	for i, w := range c.Watch.Webhooks {
		key := fmt.Sprintf("watch.webhooks[%d]", i)
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("invalid %s.url: want an http or https URL", key)
		}
		if w.SecretFile == "" {
			return nil, fmt.Errorf("invalid %s.secret_file: every endpoint needs a signing secret, from a file", key)
		}
		b, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("%s.secret_file: %w", key, err)
		}
		secrets, err := webhook.ParseSecrets(string(b))
		if err != nil {
			return nil, fmt.Errorf("invalid %s.secret_file %s: %w", key, w.SecretFile, err)
		}
		out = append(out, webhook.Endpoint{URL: w.URL, Secrets: secrets})
	}
	return out, nil
}

// natsOptions are the replication connection's options; the token comes
// from its file or BREACHD_NATS_TOKEN.
func (c *config) natsOptions(url string, log *slog.Logger) (natsrepl.Options, error) {
	r := c.Replication
	o := natsrepl.Options{URL: url, CredsFile: r.CredsFile, CAFile: r.CA, CertFile: r.Cert, KeyFile: r.Key,
		ObjectBucket: r.ObjectBucket, KVBucket: r.KVBucket, Replicas: r.Replicas, Logger: log,
		MaxLag: time.Duration(r.MaxLag), ServeStale: r.ServeStale, MaxDeltas: r.MaxDeltas}
	o.Token = os.Getenv("BREACHD_NATS_TOKEN")
	if r.TokenFile != "" {
		b, err := os.ReadFile(r.TokenFile)
		if err != nil {
			return o, fmt.Errorf("replication.token_file: %w", err)
		}
		o.Token = strings.TrimSpace(strings.TrimPrefix(string(b), "\ufeff")) // a byte order mark: Notepad's
	}
	return o, nil
}

func (c *config) quotaLimits() quota.Limits {
	return quota.Limits{Rate: c.Quota.Rate, Burst: c.Quota.Burst}
}

func (c *config) anonymousLimits() quota.Limits {
	return quota.Limits{Rate: c.Quota.AnonymousRate, Burst: c.Quota.AnonymousBurst}
}

func (c *config) network() daemon.Network {
	l := c.Limits
	return daemon.Network{MaxConnections: l.MaxConnections, MaxConnectionsPerAddress: l.MaxConnectionsAddr,
		HandshakeTimeout: time.Duration(l.HandshakeTimeout), HTTPReadTimeout: time.Duration(l.HTTPReadTimeout),
		HTTPWriteTimeout: time.Duration(l.HTTPWriteTimeout), HTTPIdleTimeout: time.Duration(l.HTTPIdleTimeout),
		HTTPMaxHeaderBytes: l.HTTPMaxHeaderBytes}
}

func (c *config) limits() server.TransportLimits {
	return server.TransportLimits{
		MaxRecvMsgSize: c.Limits.MaxRecvMsgSize, MaxSendMsgSize: c.Limits.MaxSendMsgSize,
		MaxConcurrentStreams: c.Limits.MaxConcurrentStreams, MaxConnectionIdle: time.Duration(c.Limits.MaxConnectionIdle),
		MaxConnectionAge: time.Duration(c.Limits.MaxConnectionAge), MaxConnectionAgeGrace: time.Duration(c.Limits.MaxConnectionGrace),
		KeepaliveTime: time.Duration(c.Limits.KeepaliveTime), KeepaliveTimeout: time.Duration(c.Limits.KeepaliveTimeout),
		MinPingInterval: time.Duration(c.Limits.MinPingInterval),
	}
}

func (c *config) logLevel() slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.LogLevel))
	return l
}

// print writes the effective configuration as YAML. Values that are
// secrets (none yet: keys live hashed in the key file, and TLS keys are
// named by path) would be redacted here.
func (c config) print(w io.Writer) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return err
	}
	return enc.Close()
}
