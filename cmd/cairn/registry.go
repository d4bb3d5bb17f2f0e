package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newRegistryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Maintain the built-in registry of cairn serve",
	}
	cmd.AddCommand(newRegistryGCCmd())
	return cmd
}

func newRegistryGCCmd() *cobra.Command {
	var server, token string
	var untagged bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove the built-in registry's blobs no manifest references (pushes wait while it runs)",
		Long: `Collect garbage in the built-in registry of a running cairn serve: blobs no
manifest references are removed (with --untagged, also manifests no tag or
index names, and then their blobs). CNCF Distribution's collector is
offline, so the server holds every push, tag and delete until it is done;
pulls go on. Replicas sharing an S3 bucket do not pause: run it on the
replica pushes go to, at a quiet time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok := serverToken(server, token)
			if tok == "" {
				return fmt.Errorf("an admin token is required: --token or CAIRN_TOKEN (cairn serve writes it to DATA/admin-token)")
			}
			q := url.Values{}
			if untagged {
				q.Set("untagged", "1")
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost,
				strings.TrimRight(server, "/")+"/api/v1/registry/gc?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("registry gc on %s: %w", server, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("registry gc on %s: %s: %s", server, resp.Status, strings.TrimSpace(string(body)))
			}
			var r struct {
				BlobsBefore, BlobsAfter int
				BytesBefore, BytesAfter int64
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return fmt.Errorf("registry gc on %s: decode answer: %w", server, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registry gc: removed %d of %d blobs, %d of %d bytes\n",
				r.BlobsBefore-r.BlobsAfter, r.BlobsBefore, r.BytesBefore-r.BytesAfter, r.BytesBefore)
			return nil
		},
	}
	def := os.Getenv("CAIRN_SERVER")
	if def == "" {
		def = "http://127.0.0.1:7480"
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", def, "cairn server URL (env CAIRN_SERVER)")
	f.StringVar(&token, "token", "", "admin token (env CAIRN_TOKEN; default .cairn/admin-token for a local server)")
	f.BoolVar(&untagged, "untagged", false, "also remove manifests no tag or image index names")
	return cmd
}
