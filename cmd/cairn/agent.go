package main

import (
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent"
	"github.com/cairn-dev/cairn/registry/models"
)

func newAgentCmd() *cobra.Command {
	var (
		server, tokenFile, name, labels, root, factsFile, runtimeRoot string
		driver, kubeconfig, namespace, cairnImage, cacheMax           string
		plainHTTP, inCluster                                          bool
		pollWait, maxBackoff                                          time.Duration
		limits                                                        models.Limits
	)
	cmd := &cobra.Command{
		Use:   "agent --server URL --enroll-token-file F --root DIR [--name N] [--labels k=v,…] [--facts-file F] [--driver kube --kubeconfig F|--in-cluster --namespace NS]",
		Short: "Run the agent of a device or cluster: enroll, poll, install, activate, report",
		Long: `Run the device agent. It enrolls once (the credential is kept in
DIR/identity.json, mode 0600, and reused), reports the facts it detects
(arch, OS, kernel, memory, CPUs, accelerators, hostname, time zone, disk free)
merged with --facts-file and --labels, then long-polls its desired state and
installs each release's model into an inactive slot under DIR/models, switches
to it atomically, runs the health check and rolls back on failure.

The enrollment token (the fleet's, or a one-time one from cairn target
preauth) is read from --enroll-token-file or CAIRN_ENROLL_TOKEN, never from
the command line; a
device enrolled with the fleet's token waits until an admin runs cairn target
accept NAME (unless the server runs with enrollment: auto). Health checks and
restart commands get only PATH, HOME, USER, LOGNAME, SHELL, LANG, LC_ALL,
LC_CTYPE, TZ and TMPDIR of the agent's environment, plus CAIRN_MODEL_DIR.

With --driver kube the target is a namespace of a Kubernetes cluster: the
facts come from the API server (kind: cluster, kubernetesVersion, nodes,
architectures, allocatable CPU, memory and GPUs, kserve) and each release
is server-side applied (field manager cairn) as an InferenceService where
KServe is installed, otherwise as a Deployment and Service; health comes
from the workload's status, a failed digest is replaced by the last healthy
one, and what a release no longer declares is pruned. DIR keeps only the
identity. See examples/kube for the RBAC it needs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" {
				return fmt.Errorf("--server is required")
			}
			if root == "" {
				return fmt.Errorf("--root is required")
			}
			if cmd.Flags().Changed("enroll-token") {
				return fmt.Errorf("--enroll-token is gone: a token in the command line is visible to every user of the machine (ps); put it in a file and pass --enroll-token-file")
			}
			token := os.Getenv("CAIRN_ENROLL_TOKEN") // a systemd EnvironmentFile or a Kubernetes Secret
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("read enrollment token: %w", err)
				}
				token = strings.TrimSpace(string(b))
			}
			lbl, err := parseLabels(labels)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(root, 0o755); err != nil {
				return fmt.Errorf("create root: %w", err)
			}
			logger := log.New(cmd.ErrOrStderr(), "", log.LstdFlags)
			var drv agent.Driver
			var facts fleet.Facts
			switch driver {
			case "files", "":
				if kubeconfig != "" || inCluster || namespace != "" {
					return fmt.Errorf("--kubeconfig, --in-cluster and --namespace need --driver kube")
				}
				facts = agent.DetectFacts(root)
			case "kube":
				kd, kf, err := newKubeDriver(cmd.Context(), kubeconfig, inCluster, namespace, cairnImage, plainHTTP, logger.Printf)
				if err != nil {
					return err
				}
				drv, facts = kd, kf
			default:
				return fmt.Errorf("--driver %q: want files or kube", driver)
			}
			facts.AgentVersion = version
			if factsFile != "" {
				if err := agent.LoadFactsFile(factsFile, &facts); err != nil {
					return err
				}
			}
			var cacheBytes int64
			if cacheMax != "" {
				n, err := agent.ParseBytes(cacheMax)
				if err != nil {
					return fmt.Errorf("--cache-max: %w", err)
				}
				cacheBytes = n
			}
			a, err := agent.New(agent.Config{
				Root: root, Name: name, Labels: lbl, Facts: facts, EnrollToken: token,
				API: fleet.NewClient(server, fleet.WithUserAgent("cairn-agent/"+version)), PlainHTTP: plainHTTP,
				RuntimeRoot: runtimeRoot, CacheMax: cacheBytes, PullLimits: limits,
				PollWait: pollWait, MaxBackoff: maxBackoff, Logf: logger.Printf, Driver: drv,
			})
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "fleet API URL of cairn serve (http://host:7480)")
	var gone string
	f.StringVar(&gone, "enroll-token", "", "removed: use --enroll-token-file")
	f.MarkHidden("enroll-token")
	f.StringVar(&tokenFile, "enroll-token-file", "", "file holding the enrollment token (needed until enrolled; else env CAIRN_ENROLL_TOKEN): the fleet's (DATA/enroll-token of cairn serve) or one from cairn target preauth")
	f.StringVar(&name, "name", "", "target name (default: the hostname)")
	f.StringVar(&labels, "labels", "", "labels as k=v,k=v")
	f.StringVar(&root, "root", "", "agent folder: identity, journal, model slots, layer cache")
	f.StringVar(&factsFile, "facts-file", "", "JSON file of facts that override detected ones (arch, osVersion, memory, accelerators, timeZone, …)")
	f.StringVar(&runtimeRoot, "runtime-root", "", "make absolute runtime.path links under this folder (several simulated devices on one machine)")
	f.BoolVar(&plainHTTP, "plain-http", false, "pull from registries over plain HTTP")
	f.DurationVar(&pollWait, "poll-wait", agent.DefaultPollWait, "how long each desired-state long-poll waits")
	f.StringVar(&cacheMax, "cache-max", "", "bytes the layer cache keeps beyond the active, previous and in-flight models, such as 4G (default: twice the largest model)")
	f.DurationVar(&maxBackoff, "max-backoff", agent.DefaultMaxBackoff, "longest delay between retries when offline")
	pullLimitFlags(f, &limits)
	f.StringVar(&driver, "driver", "files", "files (a device: model slots under --root) or kube (a namespace of a Kubernetes cluster)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster (--driver kube)")
	f.BoolVar(&inCluster, "in-cluster", false, "use the pod's service account (--driver kube)")
	f.StringVar(&namespace, "namespace", "", "namespace the releases go to (--driver kube)")
	f.StringVar(&cairnImage, "cairn-image", "", "image of the init container that runs cairn model pull (--driver kube; default "+kubeDefaultCairnImage+")")
	return cmd
}

// parseLabels reads k=v,k=v.
func parseLabels(s string) (map[string]string, error) {
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
