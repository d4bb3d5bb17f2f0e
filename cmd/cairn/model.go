package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cairn-dev/cairn/fleet/agent/agentcli"
	"github.com/cairn-dev/cairn/internal/memlimit"
	"github.com/cairn-dev/cairn/internal/output"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/registry/models"
)

func newModelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Push, pull and inspect models as OCI artifacts (CNCF ModelPack; reads KitOps ModelKits)",
	}
	cmd.AddCommand(newModelPushCmd(), newModelPullCmd(), newModelInspectCmd())
	return cmd
}

// registryFlags are the flags every model verb shares.
func registryFlags(cmd *cobra.Command, o *models.Options) {
	o.Keychain = cairnKeychain{token: func() (string, string) { return "", "" }}
	cmd.Flags().BoolVar(&o.PlainHTTP, "plain-http", false, "talk HTTP, not HTTPS, to the registry")
	cmd.Flags().IntVar(&o.Jobs, "jobs", 4, "layers transferred in parallel")
	cmd.Flags().StringVar(&o.Platform, "platform", "", "os/arch[/variant][+accelerator]: the variant to push into the image index at REF, or to choose from one")
}

func newModelPushCmd() *cobra.Command {
	var (
		o                             models.PushOptions
		trainedOn, annotations, kinds []string
		created, preset               string
		lineageURL, lineageToken      string
	)
	cmd := &cobra.Command{
		Use:   "push REF PATH...",
		Short: "Pack files or folders as a ModelPack artifact, push it, print REF@sha256:… last",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.TrainedOn, err = keyValues(trainedOn, "--trained-on"); err != nil {
				return err
			}
			if o.Annotations, err = keyValues(annotations, "--annotation"); err != nil {
				return err
			}
			if o.Kinds, err = keyValues(kinds, "--kind"); err != nil {
				return err
			}
			if created != "" {
				if s, err := strconv.ParseInt(created, 10, 64); err == nil {
					o.Created = time.Unix(s, 0)
				} else if o.Created, err = time.Parse(time.RFC3339, created); err != nil {
					return fmt.Errorf("--created %q: want RFC 3339 (2026-01-02T15:04:05Z) or Unix seconds", created)
				}
			} else if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
				s, err := strconv.ParseInt(e, 10, 64)
				if err != nil {
					return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", e, err)
				}
				o.Created = time.Unix(s, 0)
			}
			switch {
			case preset == "":
			case preset != models.LayerFormatKitOps:
				return fmt.Errorf("--preset %q: want kitops", preset)
			case o.LayerFormat != "" && o.LayerFormat != preset:
				return fmt.Errorf("--preset %s and --layer-format %s: give one", preset, o.LayerFormat)
			default:
				o.LayerFormat = preset
			}
			memlimit.Set(memlimit.Transfer)
			bar := newBar(cmd.ErrOrStderr(), "push", &o.Progress)
			res, err := models.Push(cmd.Context(), args[0], args[1:], o)
			bar.finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "pushed %d files, %d bytes\n", len(res.Files), res.Size)
			for _, w := range res.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			if res.Manifest != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "variant %s: manifest %s in image index %s, also tagged %s\n", o.Platform, res.Manifest, res.Digest, res.PlatformTag)
			}
			if lineageURL != "" {
				f := lineage.PushFacts{ModelDigest: res.Digest, Ref: args[0], Source: o.Source, Revision: o.Revision,
					Name: o.Name, Version: o.Version, TrainedOn: o.TrainedOn, Time: time.Now().UTC()}
				if err := lineage.NewClient(lineageURL, lineageToken).RecordPush(cmd.Context(), f); err != nil {
					return fmt.Errorf("record push of %s in lineage at %s: %w", res.Ref, lineageURL, err)
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Ref)
			return nil
		},
	}
	registryFlags(cmd, &o.Options)
	o.Keychain = cairnKeychain{token: func() (string, string) { return lineageToken, lineageURL }}
	f := cmd.Flags()
	f.StringVar(&created, "created", "", "the config's createdAt, RFC 3339 or Unix seconds (default: $SOURCE_DATE_EPOCH, else the newest file's mtime, so one folder gives one digest)")
	f.StringVar(&o.LayerFormat, "layer-format", "", "raw (default: a raw layer per file), tar (a tar layer per file, for tools that read every layer as tar) or kitops (a KitOps ModelKit, for kit)")
	f.StringVar(&preset, "preset", "", "kitops: the same as --layer-format kitops")
	f.StringVar(&o.Format, "format", "", "model format (onnx, safetensors, gguf, …; default: from the weight files)")
	f.StringVar(&o.Name, "name", "", "model name (config descriptor)")
	f.StringVar(&o.Version, "version", "", "model version (config descriptor)")
	f.StringArrayVar(&trainedOn, "trained-on", nil, "NAME=sha256:… of a training dataset (repeatable)")
	f.StringVar(&o.Source, "source", "", "URL of the source repository")
	f.StringVar(&o.Revision, "revision", "", "source revision (commit)")
	f.StringArrayVar(&annotations, "annotation", nil, "KEY=VALUE manifest annotation (repeatable)")
	f.StringArrayVar(&kinds, "kind", nil, "GLOB=KIND: layer kind (weight, weight.config, doc, code, dataset) of matching files (repeatable)")
	f.StringVar(&lineageURL, "lineage", "", "cairn server URL to record the push in its lineage graph (packagedFrom, trainedOn)")
	f.StringVar(&lineageToken, "token", os.Getenv("CAIRN_TOKEN"), "admin API token of the --lineage server (env CAIRN_TOKEN)")
	f.BoolVar(&o.NoChunkIndex, "no-chunk-index", false, "push no chunk index (pulls of a later version then download large files whole)")
	f.StringVar(&o.DigestCache, "digest-cache", defaultDigestCache(), "folder remembering file digests, so unchanged files are not uploaded again (\"\" to turn off)")
	return cmd
}

func newModelPullCmd() *cobra.Command {
	var (
		o           models.PullOptions
		dir, format string
	)
	cmd := &cobra.Command{
		Use:   "pull REF -o DIR [--format json]",
		Short: "Pull a model (ModelPack, KitOps ModelKit) into DIR, verifying every byte",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return fmt.Errorf("pull: -o DIR is required")
			}
			memlimit.Set(memlimit.Transfer)
			bar := newBar(cmd.ErrOrStderr(), "pull", &o.Progress)
			res, err := models.Pull(cmd.Context(), args[0], dir, o)
			bar.finish()
			if err != nil {
				return err
			}
			switch format {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			case "", "text":
			default:
				return fmt.Errorf("--format %q: want text or json", format)
			}
			var n int64
			for _, f := range res.Files {
				n += f.Size
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pulled %s (%s): %d files, %d bytes into %s (%d bytes downloaded, %d reused)\n",
				res.Digest, res.Kind, len(res.Files), n, dir, res.DownloadedBytes, res.ReusedBytes)
			for _, d := range res.Deltas {
				if d.Fallback == "" {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s: rebuilt from an earlier version, %d bytes reused, %d downloaded in %d ranges\n",
						d.Path, d.ReusedBytes, d.DownloadedBytes, d.Ranges)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s: downloaded whole (%s)\n", d.Path, d.Fallback)
				}
			}
			return nil
		},
	}
	registryFlags(cmd, &o.Options)
	cmd.Flags().StringVarP(&dir, "output", "o", "", "folder to write the model into")
	cmd.Flags().StringVar(&o.CacheDir, "cache", "", "blob cache folder shared between pulls; large files of a later version are rebuilt from the chunks of the versions it holds")
	cmd.Flags().BoolVar(&o.NoDelta, "no-delta", false, "download large files whole even when an earlier version is at hand")
	cmd.Flags().StringVar(&format, "format", "text", "text, or json: the pull's summary (digest, files, downloadedBytes, reusedBytes)")
	agentcli.RegisterLimits(cmd.Flags(), &o.Limits)
	return cmd
}

func newModelInspectCmd() *cobra.Command {
	var (
		o      models.Options
		format string
	)
	cmd := &cobra.Command{
		Use:   "inspect REF",
		Short: "Show a model artifact's kind, config, layers and annotations",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := models.Inspect(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if strings.ToLower(format) == output.Table || format == "" {
				fmt.Fprintf(w, "Ref:       %s\nKind:      %s\nArtifact:  %s\nConfig:    %s %s\nSize:      %d\n",
					a.Ref, a.Kind, a.ArtifactType, a.ConfigMediaType, a.ConfigDigest, a.Size)
				if a.Index != "" {
					fmt.Fprintf(w, "Index:     %s\n", a.Index)
					for _, v := range a.Variants {
						fmt.Fprintf(w, "Variant    %s %s\n", v.Platform, v.Digest)
					}
				}
				for _, k := range sortedKeys(a.Annotations) {
					fmt.Fprintf(w, "Annotation %s=%s\n", k, a.Annotations[k])
				}
				if len(a.Config) > 0 {
					fmt.Fprintf(w, "Model:     %s\n", a.Config)
				}
				fmt.Fprintln(w)
			}
			return output.Print(w, format, a)
		},
	}
	registryFlags(cmd, &o)
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// defaultDigestCache is $XDG_CACHE_HOME/cairn (~/.cache/cairn), or "".
func defaultDigestCache() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "cairn")
}

func keyValues(kvs []string, flag string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// bar is one progress bar over all layers, on stderr when it is a terminal.
type bar struct{ b *progressbar.ProgressBar }

func newBar(w io.Writer, desc string, hooks *models.ProgressHooks) *bar {
	b := &bar{}
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return b
	}
	hooks.Total = func(n int64) { b.b = progressbar.DefaultBytes(n, desc) }
	hooks.Progress = func(_ string, n int64) {
		if b.b != nil {
			_ = b.b.Add64(n)
		}
	}
	return b
}

func (b *bar) finish() {
	if b.b != nil {
		_ = b.b.Finish()
	}
}
