package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/manifests"

	// Embed the IANA zone database so window timeZones validate the same on
	// machines without /usr/share/zoneinfo.
	_ "time/tzdata"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Decode and validate every manifest under DIR (default .)",
		Long: "Decode and validate every manifest of the repository checked out at DIR: the *.yaml files under DIR/manifests,\n" +
			"or under DIR (except policies/) when it has no manifests folder. Prints a one-line summary, or every error\n" +
			"as file:line: Kind/name: field: message on stderr and exits 1.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			snap, err := manifests.LoadDir(dir)
			var list manifests.ErrorList
			if errors.As(err, &list) {
				for _, e := range list {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
				}
				return &exitError{code: 1}
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok: "+snap.Summary())
			return nil
		},
	}
}
