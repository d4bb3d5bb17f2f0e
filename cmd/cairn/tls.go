package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/internal/tlsfiles"
)

// addCAFlag adds --ca-file to root's persistent flags; before any verb runs,
// a CA file (the flag, else env CAIRN_CA_FILE) joins the system roots of
// every HTTPS connection the process makes: the server's APIs and its
// built-in registry. The agent has its own --ca-file (agentcli).
func addCAFlag(root *cobra.Command) {
	var caFile string
	root.PersistentFlags().StringVar(&caFile, "ca-file", "", "PEM file of a CA to trust besides the system roots, such as the one of cairn serve --tls-cert (env CAIRN_CA_FILE)")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		file := caFile
		if file == "" {
			file = os.Getenv("CAIRN_CA_FILE")
		}
		if file == "" {
			return nil
		}
		tc, err := tlsfiles.Client(file, "", "")
		if err != nil {
			return fmt.Errorf("--ca-file: %w", err)
		}
		// The process's outbound transports: net/http's and
		// go-containerregistry's (model push and pull).
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			t.TLSClientConfig = tc
		}
		if t, ok := remote.DefaultTransport.(*http.Transport); ok {
			t.TLSClientConfig = tc.Clone()
		}
		return nil
	}
}
