package e2e

import "fmt"

// edgeProfile is the DeviceProfile edge: the targets labelled env=prod.
const edgeProfile = `apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: edge}
spec:
  selector:
    matchLabels: {env: prod}
`

// demoRelease is the Model demo (version, artifact) and the Release demo
// of it on profile, whose health check passes when the model has a file
// named ok; spec is more of the Release's spec, each line indented by two.
func demoRelease(version, artifact, profile, spec string) string {
	return fmt.Sprintf(`---
apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: demo}
spec:
  version: "%s"
  artifact: %s
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: demo}
spec:
  model: demo
  targets: [{profile: %s}]
  runtime:
    healthCheck:
      exec: [sh, -c, 'test -f "$CAIRN_MODEL_DIR/ok"']
      period: 200ms
      timeout: 5s
%s`, version, artifact, profile, spec)
}
