package manifests_test

import (
	"fmt"
	"testing/fstest"

	"github.com/cairn-dev/cairn/manifests"
)

func ExampleLoadDir() {
	snap, err := manifests.LoadDir("testdata/good")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(snap.Summary())
	r, _ := snap.Release("bearing-anomaly-orin")
	m, _ := snap.Model(r.Spec.Model)
	fmt.Printf("%s runs %s %s on %s, declared at %s:%d\n", r.Metadata.Name, m.Metadata.Name, m.Spec.Version, r.Spec.Targets[0].Profile, r.Source.File, r.Source.Line)
	// Output:
	// 10 objects in 6 files (2 Datasets, 1 Model, 2 DeviceProfiles, 2 RolloutPolicies, 2 Releases, 1 Alert)
	// bearing-anomaly-orin runs bearing-anomaly 1.4.0 on orin-prod, declared at manifests/releases.yaml:12
}

func ExampleLoad_errors() {
	repo := fstest.MapFS{"manifests/release.yaml": {Data: []byte(`apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: bearing-anomaly-orin}
spec:
  model: bearing-anomaly
  targets: [{profile: orin-prod}]
  rolloutPolicy: cautious
  suspend: no
`)}}
	_, err := manifests.Load(repo)
	fmt.Println(err)
	// Output:
	// manifests/release.yaml:5: Release/bearing-anomaly-orin: spec.model: Model "bearing-anomaly" not found
	// manifests/release.yaml:6: Release/bearing-anomaly-orin: spec.targets[0].profile: DeviceProfile "orin-prod" not found
	// manifests/release.yaml:7: Release/bearing-anomaly-orin: spec.rolloutPolicy: RolloutPolicy "cautious" not found
	// manifests/release.yaml:8: Release/bearing-anomaly-orin: spec.suspend: want true or false, got string "no"
}
