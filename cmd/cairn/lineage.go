package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/internal/output"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/lineage/openlineage"
)

// lineageSource is where the lineage verbs read: a server or a database.
type lineageSource struct {
	server, token, db string
}

func (s *lineageSource) open(ctx context.Context) (lineage.Querier, func(), error) {
	if s.db != "" {
		db, err := sqldb.Open(ctx, s.db)
		if err != nil {
			return nil, nil, err
		}
		g, err := lineage.Open(ctx, db, lineage.WithoutMemoryIndex()) // one query: SQL answers it, no index to load
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		return g, func() { db.Close() }, nil
	}
	return lineage.NewClient(s.server, serverToken(s.server, s.token)), func() {}, nil
}

func newLineageCmd() *cobra.Command {
	src := &lineageSource{}
	cmd := &cobra.Command{
		Use:   "lineage",
		Short: "Lineage queries (upstream, downstream, at, where) and OpenLineage export",
	}
	server := os.Getenv("CAIRN_SERVER")
	if server == "" {
		server = "http://127.0.0.1:7480"
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&src.server, "server", server, "cairn server URL (env CAIRN_SERVER)")
	pf.StringVar(&src.token, "token", "", "bearer token (env CAIRN_TOKEN; default .cairn/admin-token for a local server)")
	pf.StringVar(&src.db, "db", "", "query this database directly (sqlite path or postgres:// URL) instead of a server")
	cmd.AddCommand(
		newLineageWalkCmd(src, "upstream", "What NODE derives from: models, datasets, commits, releases"),
		newLineageWalkCmd(src, "downstream", "What derives from NODE: models, releases, rollouts, targets"),
		newLineageAtCmd(src),
		newLineageWhereCmd(src),
		newLineageExportCmd(src),
	)
	return cmd
}

func newLineageWalkCmd(src *lineageSource, dir, short string) *cobra.Command {
	var (
		depth          int
		format, outFmt string
	)
	cmd := &cobra.Command{
		Use:   dir + " NODE",
		Short: short + " (NODE: type:id, a bare digest, or a target name)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, done, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			walk := q.Upstream
			if dir == "downstream" {
				walk = q.Downstream
			}
			sg, err := walk(cmd.Context(), args[0], depth)
			if err != nil {
				return lineageErr(err, args[0])
			}
			switch format {
			case "dot":
				return sg.WriteDot(cmd.OutOrStdout())
			case "":
				return output.Print(cmd.OutOrStdout(), outFmt, sg)
			default:
				return fmt.Errorf("--format %q: only dot is supported", format)
			}
		},
	}
	cmd.Flags().IntVar(&depth, "depth", lineage.DefaultDepth, "edges to follow")
	cmd.Flags().StringVar(&format, "format", "", "dot: render the subgraph for Graphviz")
	cmd.Flags().StringVarP(&outFmt, "output", "o", "table", "table, json or yaml")
	return cmd
}

func parseTime(flag, v string) (*time.Time, error) {
	if v == "" || v == "now" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, fmt.Errorf("--%s %q: want RFC 3339 (2026-11-24T14:00:00Z)", flag, v)
	}
	return &t, nil
}

func newLineageAtCmd(src *lineageSource) *cobra.Command {
	var when, outFmt string
	cmd := &cobra.Command{
		Use:   "at TARGET --time RFC3339",
		Short: "Which model ran on TARGET at a time, from which release and commit, trained on which datasets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTime("time", when)
			if err != nil {
				return err
			}
			if t == nil {
				now := time.Now()
				t = &now
			}
			q, done, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			a, err := q.At(cmd.Context(), args[0], *t)
			if err != nil {
				return lineageErr(err, args[0])
			}
			return printDeployments(cmd, outFmt, a, "nothing ran on "+args[0]+" then")
		},
	}
	cmd.Flags().StringVar(&when, "time", "", "RFC 3339 time (default now)")
	cmd.Flags().StringVarP(&outFmt, "output", "o", "table", "table, json or yaml")
	return cmd
}

func newLineageWhereCmd(src *lineageSource) *cobra.Command {
	var when, outFmt string
	cmd := &cobra.Command{
		Use:   "where MODEL_OR_DATASET [--time T]",
		Short: "Targets running a model that is, or derives from, a model or dataset digest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTime("time", when)
			if err != nil {
				return err
			}
			q, done, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			a, err := q.Where(cmd.Context(), args[0], t)
			if err != nil {
				return lineageErr(err, args[0])
			}
			return printDeployments(cmd, outFmt, a, "no target runs anything derived from "+args[0])
		},
	}
	cmd.Flags().StringVar(&when, "time", "", "RFC 3339 time (default now)")
	cmd.Flags().StringVarP(&outFmt, "output", "o", "table", "table, json or yaml")
	return cmd
}

// lineageErr says plainly that lineage never recorded node, and passes
// any other error on.
func lineageErr(err error, node string) error {
	if errors.Is(err, lineage.ErrNotFound) {
		return fmt.Errorf("lineage: %s is unknown: no commit, release, model, dataset or target of that name was ever recorded", node)
	}
	return err
}

// printDeployments prints a, or for a table with no rows says why on stderr.
func printDeployments(cmd *cobra.Command, format string, a []lineage.Active, none string) error {
	if len(a) == 0 && (format == "" || format == output.Table) {
		fmt.Fprintln(cmd.ErrOrStderr(), none)
		return nil
	}
	if a == nil {
		a = []lineage.Active{}
	}
	return output.Print(cmd.OutOrStdout(), format, lineage.Deployments(a))
}

func newLineageExportCmd(src *lineageSource) *cobra.Command {
	var (
		openLineage bool
		file, url   string
		urlToken    string
	)
	cmd := &cobra.Command{
		Use:   "export --openlineage [-o FILE | --url URL]",
		Short: "Every recorded step as an OpenLineage RunEvent: JSON lines to a file, or POSTed to URL/api/v1/lineage (Marquez)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !openLineage {
				return fmt.Errorf("export: --openlineage is the only format; pass it")
			}
			if url != "" && file != "" {
				return fmt.Errorf("export: -o and --url exclude each other")
			}
			q, done, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var emit func(openlineage.RunEvent) error
			var w io.Writer = cmd.OutOrStdout()
			var f *os.File
			switch {
			case url != "":
				p := &openlineage.Poster{URL: url, Token: urlToken}
				emit = func(ev openlineage.RunEvent) error { return p.Post(cmd.Context(), ev) }
			default:
				if file != "" && file != "-" {
					if f, err = os.Create(file); err != nil {
						return fmt.Errorf("export: %w", err)
					}
					w = f
				}
				emit = openlineage.JSONLines(w)
			}
			n := 0
			err = lineage.Export(cmd.Context(), q, func(ev openlineage.RunEvent) error { n++; return emit(ev) })
			if f != nil {
				if cerr := f.Close(); err == nil && cerr != nil {
					err = fmt.Errorf("export: %w", cerr)
				}
			}
			if err != nil {
				return err
			}
			dest := strings.TrimSpace(file + url)
			if dest == "" || dest == "-" {
				dest = "stdout"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d OpenLineage events to %s\n", n, dest)
			return nil
		},
	}
	cmd.Flags().BoolVar(&openLineage, "openlineage", false, "export OpenLineage RunEvents")
	cmd.Flags().StringVarP(&file, "output", "o", "", "write JSON lines to FILE (default stdout)")
	cmd.Flags().StringVar(&url, "url", "", "POST each event to URL/api/v1/lineage (Marquez-compatible), with retries")
	cmd.Flags().StringVar(&urlToken, "url-token", os.Getenv("OPENLINEAGE_API_KEY"), "bearer token for --url (env OPENLINEAGE_API_KEY)")
	return cmd
}
