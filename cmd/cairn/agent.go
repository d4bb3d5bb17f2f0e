package main

import (
	"context"
	"fmt"
	"github.com/cairn-dev/cairn/fleet/agent/holdout"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent"
	"github.com/cairn-dev/cairn/fleet/agent/agentcli"
)

// newAgentCmd is cairn-agent's command (fleet/agent/agentcli) with the kube
// driver, which the device binary does not link.
func newAgentCmd() *cobra.Command {
	var (
		o                                       agentcli.Flags
		driver, kubeconfig, namespace, cairnImg string
		inCluster                               bool
	)
	cmd := &cobra.Command{
		Use:   "agent --server URL --enroll-token-file F --root DIR [--name N] [--labels k=v,…] [--facts-file F] [--driver kube --kubeconfig F|--in-cluster --namespace NS]",
		Short: "Run the agent of a device or cluster: enroll, poll, install, activate, report",
		Long: agentcli.Long + `

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
			o.PullHoldout = holdout.Pull // evaluator agents (cairn-agent has none)
			switch driver {
			case "files", "":
				if kubeconfig != "" || inCluster || namespace != "" {
					return fmt.Errorf("--kubeconfig, --in-cluster and --namespace need --driver kube")
				}
				return o.Run(cmd.Context(), version, cmd.ErrOrStderr())
			case "kube":
				return o.RunWith(cmd.Context(), version, cmd.ErrOrStderr(), func(ctx context.Context, logf func(string, ...any)) (agent.Driver, fleet.Facts, error) {
					kd, facts, err := newKubeDriver(ctx, kubeconfig, inCluster, namespace, cairnImg, o.PlainHTTP, logf)
					if err != nil {
						return nil, fleet.Facts{}, err
					}
					return kd, facts, nil
				})
			default:
				return fmt.Errorf("--driver %q: want files or kube", driver)
			}
		},
	}
	o.Register(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&driver, "driver", "files", "files (a device: model slots under --root) or kube (a namespace of a Kubernetes cluster)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster (--driver kube)")
	f.BoolVar(&inCluster, "in-cluster", false, "use the pod's service account (--driver kube)")
	f.StringVar(&namespace, "namespace", "", "namespace the releases go to (--driver kube)")
	f.StringVar(&cairnImg, "cairn-image", "", "image of the init container that runs cairn model pull (--driver kube; default "+kubeDefaultCairnImage+")")
	return cmd
}
