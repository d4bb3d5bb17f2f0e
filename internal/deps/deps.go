//go:build tools

// Package deps pins the modules cairn is built on while packages adopt them; removed once each is imported.
package deps
import (
	_ "github.com/go-git/go-git/v5"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/minio/minio-go/v7"
	_ "github.com/fluxcd/pkg/runtime/conditions"
	_ "github.com/open-policy-agent/opa/v1/rego"
	_ "gorgonia.org/tensor"
	_ "modernc.org/sqlite"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/spf13/cobra"
	_ "sigs.k8s.io/yaml"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/robfig/cron/v3"
)
