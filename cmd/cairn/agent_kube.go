package main

import (
	"context"
	"fmt"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent/kube"
)

// The kube driver is registered here, in cmd/cairn only: fleet/agent does
// not import it, so the device agent binary links no client-go.

const kubeDefaultCairnImage = kube.DefaultCairnImage

// newKubeDriver connects to the cluster and reads its facts.
func newKubeDriver(ctx context.Context, kubeconfig string, inCluster bool, namespace, cairnImage string, plainHTTP bool,
	logf func(string, ...any)) (*kube.Driver, fleet.Facts, error) {
	if namespace == "" {
		return nil, fleet.Facts{}, fmt.Errorf("--driver kube needs --namespace")
	}
	rc, err := kube.RestConfig(kubeconfig, inCluster)
	if err != nil {
		return nil, fleet.Facts{}, err
	}
	d, err := kube.New(kube.Config{Rest: rc, Namespace: namespace, CairnImage: cairnImage, PlainHTTP: plainHTTP, Logf: logf})
	if err != nil {
		return nil, fleet.Facts{}, err
	}
	facts, err := d.Facts(ctx)
	if err != nil {
		return nil, fleet.Facts{}, err
	}
	return d, facts, nil
}
