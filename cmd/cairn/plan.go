package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/output"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
)

func newPlanCmd() *cobra.Command {
	var (
		base, inventory, server, token, format string
		noBase, noRegistry, plainHTTP          bool
		wholeLayers                            bool
		stores                                 map[string]string
		policyTimeout                          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "plan [DIR]",
		Short: "Show what merging the checkout at DIR does: waves, unfit targets, bytes, policy verdicts",
		Long: "Plan the repository checked out at DIR (default .) without access to any cluster or device: for every\n" +
			"release the model digest from → to (against --base, default the merge base with the default branch),\n" +
			"the targets of the inventory it selects grouped into rollout waves, the targets that cannot take the\n" +
			"model and why, the bytes each must download (read from the registry) and the verdicts of the policies.\n" +
			"A target that runs an earlier version of a release downloads only the layers it lacks and, of a large\n" +
			"layer, only the chunks the earlier version's chunk index does not list (delta updates); the plan shows\n" +
			"both that and the size in whole layers, and counts whole layers where an index is missing or unreadable.\n" +
			"Markdown is made for a pull-request comment. Exits 2 after printing the plan when a policy denies.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if inventory != "" && server != "" {
				return fmt.Errorf("plan: --inventory and --server exclude each other")
			}
			if format != "markdown" && format != "md" && format != output.JSON {
				return fmt.Errorf("plan: unknown output format %q: want markdown or json", format)
			}
			ctx := cmd.Context()
			o := plan.DirOptions{BaseRev: base, NoBase: noBase, PolicyTimeout: policyTimeout}
			switch {
			case inventory != "":
				f, err := os.Open(inventory)
				if err != nil {
					return fmt.Errorf("plan: %w", err)
				}
				inv, err := plan.ReadInventory(f)
				f.Close()
				if err != nil {
					return fmt.Errorf("plan: %s: %w", inventory, err)
				}
				o.Inventory = inv
			case server != "":
				inv, err := fleet.NewAdminClient(server, serverToken(server, token)).Inventory(ctx)
				if err != nil {
					return fmt.Errorf("plan: %w", err)
				}
				o.Inventory, o.Live = inv, true
			}
			if !noRegistry {
				o.Inspector = plan.RegistryInspector(func(string) bool { return plainHTTP })
				if !wholeLayers {
					o.ChunkIndexes = plan.RegistryChunkIndexer(func(string) bool { return plainHTTP })
				}
			}
			if len(stores) > 0 {
				o.Datasets = plan.StoreChecker(stores)
			}
			p, err := plan.ForDir(ctx, dir, o)
			if err != nil {
				return fmt.Errorf("plan %s: %w", dir, err)
			}
			out := cmd.OutOrStdout()
			if format == output.JSON {
				err = output.Print(out, output.JSON, p)
			} else {
				err = p.WriteMarkdown(out)
			}
			if err != nil {
				return err
			}
			return p.Err()
		},
	}
	f := cmd.Flags()
	f.StringVar(&base, "base", "", "revision to compare with (default: the merge base of HEAD with the default branch)")
	f.BoolVar(&noBase, "no-base", false, "do not compare with any revision")
	f.StringVar(&inventory, "inventory", "", "inventory file: YAML or JSON list of targets {name, labels, facts, models, layers}")
	f.StringVar(&server, "server", "", "read the live inventory from this cairn server (token: --token or $CAIRN_TOKEN)")
	f.StringVar(&token, "token", "", "admin or read-only token for --server (default $CAIRN_TOKEN, then a local server's .cairn/admin-token)")
	f.StringVarP(&format, "output", "o", "markdown", "output format: markdown or json")
	f.BoolVar(&noRegistry, "no-registry", false, "do not read artifact sizes from the registry (download sizes unknown)")
	f.DurationVar(&policyTimeout, "policy-timeout", policies.EvalTimeout, "bound on evaluating one release's policies; a release over it is denied (as serve's policyTimeout)")
	f.BoolVar(&wholeLayers, "whole-layers", false, "do not read the running versions and chunk indexes from the registry: count whole every layer a target's inventory does not list")
	f.BoolVar(&plainHTTP, "plain-http", false, "talk plain HTTP to the registry")
	f.StringToStringVar(&stores, "dataset-store", nil, "NAME=URL: check that datasets of store NAME (spec.store, default \"default\") exist at URL (file:// or s3://), as cairn serve does with its datasetStores; repeatable")
	return cmd
}
