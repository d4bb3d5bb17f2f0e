package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/fleet"
)

func newRolloutCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "rollout pause|resume|abort|retry RELEASE",
		Short: "Operator actions on a release's rollout",
		Long: `Pause, resume, abort (every target back to the last good model) or retry
(start again from wave 1) the rollout of RELEASE. The server applies the action
on its next reconcile step and records it as an event.`,
	}
	for _, action := range []struct{ name, short string }{
		{"pause", "Hold the rollout: no new target starts updating"},
		{"resume", "Continue a paused rollout"},
		{"abort", "Stop the rollout and send every target back to the last good model"},
		{"retry", "Start a failed, aborted or paused rollout again from wave 1"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   action.name + " RELEASE",
			Short: action.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				tok := rolloutToken(server, token)
				if tok == "" {
					return fmt.Errorf("an admin token is required: --token or CAIRN_TOKEN (cairn serve writes it to DATA/admin-token)")
				}
				if err := fleet.NewAdminClient(server, tok).RolloutAction(c.Context(), args[0], action.name); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "rollout %s: %s requested\n", args[0], action.name)
				return nil
			},
		})
	}
	defServer := os.Getenv("CAIRN_SERVER")
	if defServer == "" {
		defServer = "http://127.0.0.1:7480"
	}
	f := cmd.PersistentFlags()
	f.StringVar(&server, "server", defServer, "status API URL of cairn serve (env CAIRN_SERVER)")
	f.StringVar(&token, "token", os.Getenv("CAIRN_TOKEN"), "admin token (env CAIRN_TOKEN; default .cairn/admin-token for a local server)")
	return cmd
}

// rolloutToken is the --token flag (default $CAIRN_TOKEN), or for a server on
// loopback the admin token a local `cairn serve` wrote to .cairn/admin-token.
func rolloutToken(server, flag string) string {
	if flag != "" {
		return flag
	}
	u, err := url.Parse(server)
	if err != nil {
		return ""
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(".cairn", "admin-token"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
