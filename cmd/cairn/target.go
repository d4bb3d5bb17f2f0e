package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/output"
)

func newTargetCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "target list|accept|reject|delete|preauth NAME",
		Short: "Accept, reject, delete and pre-authorise devices (admin token)",
		Long: `Manage device identity. A device enrolled with the shared enrollment token
is pending until an admin accepts it (unless cairn serve runs with
enrollment: auto); a second enrollment under the name of an accepted device
waits for acceptance too, and the device's current credential keeps working
until then. reject refuses a pending credential; delete forgets a target and
its credential. preauth prints a one-time token that enrolls NAME at once
(cairn agent --enroll-token-file).`,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List targets with their acceptance state",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ts, err := sf.client().Targets(c.Context())
			if err != nil {
				return err
			}
			return output.Print(c.OutOrStdout(), sf.output, identityList(ts))
		},
	}
	cmd.AddCommand(list)
	for _, a := range []struct{ name, short, done string }{
		{"accept", "Accept the pending credential of NAME (a new device, or a second enrollment)", "accepted"},
		{"reject", "Refuse the pending credential of NAME", "rejected"},
		{"delete", "Forget NAME and its credential", "deleted"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   a.name + " NAME",
			Short: a.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if err := sf.client().TargetAction(c.Context(), args[0], a.name); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "target %s %s\n", args[0], a.done)
				return nil
			},
		})
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "preauth NAME",
		Short: "Print a one-time enrollment token for NAME (accepted at once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			tok, err := sf.client().Preauth(c.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), tok)
			return nil
		},
	})
	for _, sub := range cmd.Commands() {
		sf.add(sub)
	}
	return cmd
}

type identityList []fleet.TargetInfo

func (l identityList) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(l))
	for _, t := range l {
		state := dash(t.State)
		if t.PendingCredential {
			state += " (new credential pending)"
		}
		seen := time.Time{}
		if t.LastSeen != nil {
			seen = *t.LastSeen
		}
		rows = append(rows, []string{t.Name, state, t.EnrolledAt.Local().Format(time.RFC3339), age(seen)})
	}
	return []string{"name", "state", "enrolled", "last seen"}, rows
}
