package agentcli

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent"
	"github.com/cairn-dev/cairn/internal/tlsfiles"
	"github.com/cairn-dev/cairn/registry/models"
)

// Long is the help text of the agent's command.
const Long = `Run the device agent. It enrolls once (the credential is kept in
DIR/identity.json, mode 0600, and reused), reports the facts it detects
(arch, OS, kernel, memory, CPUs, accelerators, hostname, time zone, disk free,
its own version) merged with --facts-file and --labels, then long-polls its
desired state and installs each release's model into an inactive slot under
DIR/models, switches to it atomically, runs the health check and rolls back
on failure. A model over the pull limits (--max-unpack-ratio, --max-files,
--disk-reserve) fails for good and the previous one keeps serving.

The enrollment token (the fleet's, or a one-time one from cairn target
preauth) is read from --enroll-token-file or CAIRN_ENROLL_TOKEN, never from
the command line; a device enrolled with the fleet's token waits until an
admin runs cairn target accept NAME (unless the server runs with
enrollment: auto). With --client-cert/--client-key naming the target
(cairn serve --client-ca), no enrollment token is needed. Health checks and restart commands get only PATH, HOME,
USER, LOGNAME, SHELL, LANG, LC_ALL, LC_CTYPE, TZ and TMPDIR of the agent's
environment, plus CAIRN_MODEL_DIR.`

// Flags are the agent's flags.
type Flags struct {
	Server, Token, Name, Labels, Root, FactsFile, RuntimeRoot string
	TokenFile, CacheMax                                       string
	CAFile, ClientCert, ClientKey                             string
	PlainHTTP, Insecure                                       bool
	PollWait, MaxBackoff                                      time.Duration
	Limits                                                    models.Limits
	// PullHoldout lets the agent evaluate (cairn agent sets it; cairn-agent
	// does not, to stay without the dataset code).
	PullHoldout agent.HoldoutFunc
}

// Register adds the flags to fs.
func (o *Flags) Register(f *pflag.FlagSet) {
	f.StringVar(&o.Server, "server", "", "fleet API URL of cairn serve (https://host:7480; plain http only to loopback unless --insecure)")
	f.StringVar(&o.CAFile, "ca-file", "", "PEM file of the CA that signed the server's certificate (added to the system roots; also used for pulls from the server's built-in registry)")
	f.StringVar(&o.ClientCert, "client-cert", "", "PEM client certificate presented to the server: with cairn serve --client-ca, one whose CN or DNS name is --name enrolls and authenticates as that target without a token")
	f.StringVar(&o.ClientKey, "client-key", "", "PEM key of --client-cert")
	f.BoolVar(&o.Insecure, "insecure", false, "allow a plain http:// server URL to a host that is not loopback (credentials in clear text)")
	f.StringVar(&o.Token, "enroll-token", "", "removed: use --enroll-token-file")
	f.MarkHidden("enroll-token")
	f.StringVar(&o.TokenFile, "enroll-token-file", "", "file holding the enrollment token (needed until enrolled; else env CAIRN_ENROLL_TOKEN): the fleet's (DATA/enroll-token of cairn serve) or one from cairn target preauth")
	f.StringVar(&o.Name, "name", "", "target name (default: the hostname)")
	f.StringVar(&o.Labels, "labels", "", "labels as k=v,k=v")
	f.StringVar(&o.Root, "root", "", "agent folder: identity, journal, model slots, layer cache")
	f.StringVar(&o.FactsFile, "facts-file", "", "JSON file of facts that override detected ones (arch, osVersion, memory, accelerators, timeZone, …)")
	f.StringVar(&o.RuntimeRoot, "runtime-root", "", "make absolute runtime.path links under this folder (several simulated devices on one machine)")
	f.BoolVar(&o.PlainHTTP, "plain-http", false, "pull from registries over plain HTTP")
	f.DurationVar(&o.PollWait, "poll-wait", agent.DefaultPollWait, "how long each desired-state long-poll waits")
	f.StringVar(&o.CacheMax, "cache-max", "", "bytes the layer cache keeps beyond the active, previous and in-flight models, such as 4G (default: twice the largest model)")
	f.DurationVar(&o.MaxBackoff, "max-backoff", agent.DefaultMaxBackoff, "longest delay between retries when offline")
	RegisterLimits(f, &o.Limits)
}

// RegisterLimits adds the flags of the pull limits to fs (the agent's and
// cairn model pull's).
func RegisterLimits(f *pflag.FlagSet, l *models.Limits) {
	f.Float64Var(&l.MaxUnpackRatio, "max-unpack-ratio", models.DefaultMaxUnpackRatio, "a tar layer unpacks to at most this many times its compressed size (-1: no limit)")
	f.IntVar(&l.MaxFiles, "max-files", models.DefaultMaxFiles, "at most this many tar entries per model pull (-1: no limit)")
	f.Int64Var(&l.DiskReserve, "disk-reserve", models.DefaultDiskReserve, "bytes of free disk a model pull leaves (-1: no check)")
}

// DriverFunc makes the agent's driver, and the facts of what it drives, in
// place of the files driver of a device (cairn agent --driver kube).
type DriverFunc func(ctx context.Context, logf func(string, ...any)) (agent.Driver, fleet.Facts, error)

// Run runs the agent of a device until ctx ends; version goes into its
// facts and its User-Agent.
func (o *Flags) Run(ctx context.Context, version string, stderr io.Writer) error {
	return o.RunWith(ctx, version, stderr, nil)
}

// RunWith is Run with the driver newDriver makes (nil: the files driver
// with the facts detected on this machine).
func (o *Flags) RunWith(ctx context.Context, version string, stderr io.Writer, newDriver DriverFunc) error {
	if o.Server == "" {
		return fmt.Errorf("--server is required")
	}
	if o.Root == "" {
		return fmt.Errorf("--root is required")
	}
	if err := tlsfiles.CheckURL(o.Server, o.Insecure); err != nil {
		return err
	}
	// The fleet's CA verifies the server (and its built-in registry); the
	// system's roots are loaded only for a registry it does not verify.
	tr, err := tlsfiles.FleetTransport(http.DefaultTransport.(*http.Transport), o.CAFile, o.ClientCert, o.ClientKey)
	if err != nil {
		return err
	}
	if o.Token != "" {
		return fmt.Errorf("--enroll-token is gone: a token in the command line is visible to every user of the machine (ps); put it in a file and pass --enroll-token-file")
	}
	token, err := o.EnrollToken()
	if err != nil {
		return err
	}
	lbl, err := ParseLabels(o.Labels)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.Root, 0o755); err != nil {
		return fmt.Errorf("create root: %w", err)
	}
	logger := log.New(stderr, "", log.LstdFlags)
	var drv agent.Driver
	var facts fleet.Facts
	if newDriver != nil {
		if drv, facts, err = newDriver(ctx, logger.Printf); err != nil {
			return err
		}
	} else {
		facts = agent.DetectFacts(o.Root)
	}
	facts.AgentVersion = version
	if o.FactsFile != "" {
		if err := agent.LoadFactsFile(o.FactsFile, &facts); err != nil {
			return err
		}
	}
	var cacheMax int64
	if o.CacheMax != "" {
		if cacheMax, err = agent.ParseBytes(o.CacheMax); err != nil {
			return fmt.Errorf("--cache-max: %w", err)
		}
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	pullTr := tr.Clone() // the layers of large models: large buffers
	pullTr.WriteBufferSize, pullTr.ReadBufferSize = 256<<10, 256<<10
	a, err := agent.New(agent.Config{
		Root: o.Root, Name: o.Name, Labels: lbl, Facts: facts, EnrollToken: token, ClientCert: o.ClientCert != "",
		API:     fleet.NewClient(o.Server, fleet.WithUserAgent("cairn-agent/"+version), fleet.WithHTTPClient(&http.Client{Transport: tr})),
		Fetcher: &agent.PullFetcher{CacheDir: filepath.Join(root, "cache"), Limits: o.Limits, Transport: pullTr}, PlainHTTP: o.PlainHTTP,
		RuntimeRoot: o.RuntimeRoot, CacheMax: cacheMax, PullLimits: o.Limits,
		PollWait: o.PollWait, MaxBackoff: o.MaxBackoff, Logf: logger.Printf, Driver: drv, PullHoldout: o.PullHoldout,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// EnrollToken is the token of --enroll-token-file, else of env
// CAIRN_ENROLL_TOKEN (a systemd EnvironmentFile, a Kubernetes Secret).
func (o *Flags) EnrollToken() (string, error) {
	if o.TokenFile == "" {
		return os.Getenv("CAIRN_ENROLL_TOKEN"), nil
	}
	b, err := os.ReadFile(o.TokenFile)
	if err != nil {
		return "", fmt.Errorf("read enrollment token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Command is the agent's command under the name use (cairn-agent, agent).
func Command(use, version string) *cobra.Command {
	var o Flags
	cmd := &cobra.Command{
		Use:   use + " --server URL --enroll-token-file F --root DIR [--name N] [--labels k=v,…] [--facts-file F]",
		Short: "Run the device agent: enroll, poll, install, activate, report",
		Long:  Long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context(), version, cmd.ErrOrStderr())
		},
	}
	o.Register(cmd.Flags())
	return cmd
}

// ParseLabels reads k=v,k=v.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}
